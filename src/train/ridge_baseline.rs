//! The ridge baseline on a calibration's own trials: the same voxels (after the calibration's
//! normalisation), the same targets, the same training / validation split, decoded into CLIP
//! units like the projector's output so `evaluate::score_decodings` scores both alike.

use serde::Serialize;

use super::calibrate::{CalibrateError, Response};
use super::ridge::{fit_predict, Design, RidgeChoice};
use crate::features::FeatureSet;
use crate::model::calibration::{standardise, unstandardise, Calibration, Decoded};

/// The penalties the validation split chose, per stream.
#[derive(Debug, Clone, Serialize)]
pub struct RidgeBaseline {
    pub detail: RidgeChoice,
    pub semantic: RidgeChoice,
}

/// Inputs and targets of `responses`, standardised as the calibration standardises them.
struct Rows {
    detail: Vec<f32>,
    semantic: Vec<f32>,
    tokens: Vec<f32>,
    embedding: Vec<f32>,
}

fn rows<B: burn::tensor::backend::Backend>(
    calibration: &Calibration<B>,
    responses: &[Response],
    features: &FeatureSet,
) -> Result<Rows, CalibrateError> {
    let norm = &calibration.norm;
    let row_of = features.row_of();
    let mut out = Rows {
        detail: Vec::new(),
        semantic: Vec::new(),
        tokens: Vec::new(),
        embedding: Vec::new(),
    };
    for r in responses {
        let &row = row_of.get(r.stimulus.as_str()).ok_or_else(|| {
            CalibrateError::Invalid(format!("no features for stimulus {}", r.stimulus))
        })?;
        out.detail.extend_from_slice(&r.detail);
        out.semantic.extend_from_slice(&r.semantic);
        out.tokens.extend_from_slice(features.detail_row(row));
        out.embedding.extend_from_slice(features.semantic_row(row));
    }
    standardise(&mut out.detail, &norm.detail_mean, &norm.detail_std);
    standardise(&mut out.semantic, &norm.semantic_mean, &norm.semantic_std);
    standardise(&mut out.tokens, &norm.token_mean, &norm.token_std);
    standardise(
        &mut out.embedding,
        &norm.embedding_mean,
        &norm.embedding_std,
    );
    Ok(out)
}

/// Fits ridge maps on `fit`, chooses each stream's penalty on `validation`, and decodes `test`.
pub fn ridge_decodings<B: burn::tensor::backend::Backend>(
    calibration: &Calibration<B>,
    fit: &[Response],
    validation: &[Response],
    test: &[Response],
    features: &FeatureSet,
) -> Result<(Vec<Decoded>, RidgeBaseline), CalibrateError> {
    let p = &calibration.info.projector;
    let (f, v, t) = (
        rows(calibration, fit, features)?,
        rows(calibration, validation, features)?,
        rows(calibration, test, features)?,
    );
    let token_cols = p.detail_tokens * p.detail_width;
    let d = Design::new;
    let err = |e: super::ridge::RidgeError| CalibrateError::Invalid(e.to_string());
    let (mut tokens, detail) = fit_predict(
        d(&f.detail, p.detail_voxels),
        d(&f.tokens, token_cols),
        (d(&v.detail, p.detail_voxels), d(&v.tokens, token_cols)),
        d(&t.detail, p.detail_voxels),
    )
    .map_err(err)?;
    let (mut embedding, semantic) = fit_predict(
        d(&f.semantic, p.semantic_voxels),
        d(&f.embedding, p.semantic_dim),
        (
            d(&v.semantic, p.semantic_voxels),
            d(&v.embedding, p.semantic_dim),
        ),
        d(&t.semantic, p.semantic_voxels),
    )
    .map_err(err)?;
    let norm = &calibration.norm;
    unstandardise(&mut tokens, &norm.token_mean, &norm.token_std);
    unstandardise(&mut embedding, &norm.embedding_mean, &norm.embedding_std);
    let decoded = tokens
        .chunks(token_cols.max(1))
        .zip(embedding.chunks(p.semantic_dim.max(1)))
        .map(|(tokens, embedding)| Decoded {
            detail_tokens: tokens.to_vec(),
            embedding: embedding.to_vec(),
        })
        .collect();
    Ok((decoded, RidgeBaseline { detail, semantic }))
}

/// `ridge_decodings` on the calibration's own split of `train` (`calibrate_run::validation_split`
/// with its settings): fitted on the rows the projector trained on, penalties chosen on the rows
/// it was validated on.
pub fn ridge_on_calibration_split<B: burn::tensor::backend::Backend>(
    calibration: &Calibration<B>,
    train: &[Response],
    test: &[Response],
    features: &FeatureSet,
    settings: &super::calibrate::TrainSettings,
) -> Result<(Vec<Decoded>, RidgeBaseline), CalibrateError> {
    let (validation_rows, fit_rows) = super::calibrate_run::validation_split(train.len(), settings);
    let pick =
        |rows: &[usize]| -> Vec<Response> { rows.iter().map(|&i| train[i].clone()).collect() };
    let (fit, validation) = (pick(&fit_rows), pick(&validation_rows));
    ridge_decodings(calibration, &fit, &validation, test, features)
}
