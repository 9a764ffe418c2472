//! Decoding quality of a calibration on its held-out test trials (repeats averaged): 2-way
//! identification of the semantic embedding and of the pooled detail tokens, top-1 retrieval
//! among 100 candidates, and a layout probe — a ridge map from the *true* detail tokens of
//! training images to object position, applied to the *predicted* tokens of test images and
//! scored by correlation with the true position — which
//! is what tells intermediate-layer targets (BrainMCLIP) from final-layer ones. Pixel metrics
//! (PixCorr, SSIM) need the generator and are added by `eval --generator`.

use std::collections::HashMap;
use std::path::Path;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use serde::Serialize;

use super::calibrate::{CalibrateError, Response};
use super::probe::{correlation, ridge_probe, Rows};
use crate::features::FeatureSet;
use crate::metrics::{bootstrap, top_k_retrieval, two_way_identification, Estimate};
use crate::model::calibration::{Calibration, Decoded};

#[derive(Debug, Clone, Serialize)]
pub struct DecodingReport {
    pub test_images: usize,
    pub semantic_identification: Estimate,
    pub detail_identification: Estimate,
    pub retrieval_candidates: usize,
    pub semantic_top1: Estimate,
    /// Correlation (mean over x and y) of object position read from the predicted detail
    /// tokens with the true position (single-object test images), by a ridge probe fitted on
    /// the true tokens of training images.
    pub layout_probe_r: f64,
    pub layout_probe_images: (usize, usize),
}

/// Object positions of single-object stimuli, from the simulator's `stimuli/stimuli.tsv`.
pub fn single_object_positions(
    stimuli_dir: &Path,
) -> Result<HashMap<String, [f64; 2]>, CalibrateError> {
    Ok(super::layout::single_object_layouts(stimuli_dir)?
        .into_iter()
        .map(|(id, l)| (id, [l.x, l.y]))
        .collect())
}

fn pooled(tokens: &[f32], width: usize) -> Vec<f32> {
    let t = tokens.len() / width.max(1);
    (0..width)
        .map(|c| (0..t).map(|k| tokens[k * width + c]).sum::<f32>() / t.max(1) as f32)
        .collect()
}

/// Decodes the test responses and scores them against the stimuli's true features.
pub fn evaluate_decoding(
    calibration: &Calibration<Flex>,
    test: &[Response],
    train_ids: &[String],
    features: &FeatureSet,
    positions: &HashMap<String, [f64; 2]>,
) -> Result<(DecodingReport, Vec<Decoded>), CalibrateError> {
    let detail: Vec<f32> = test.iter().flat_map(|r| r.detail.iter().copied()).collect();
    let semantic: Vec<f32> = test
        .iter()
        .flat_map(|r| r.semantic.iter().copied())
        .collect();
    let decoded = calibration.decode(&detail, &semantic, &FlexDevice);
    let report = score_decodings(&decoded, test, train_ids, features, positions)?;
    Ok((report, decoded))
}

/// Scores decodings (one per test response, in CLIP units) against the stimuli's true
/// features, whatever decoder made them.
pub fn score_decodings(
    decoded: &[Decoded],
    test: &[Response],
    train_ids: &[String],
    features: &FeatureSet,
    positions: &HashMap<String, [f64; 2]>,
) -> Result<DecodingReport, CalibrateError> {
    if decoded.len() != test.len() {
        return Err(CalibrateError::Invalid(format!(
            "{} decodings for {} test responses",
            decoded.len(),
            test.len()
        )));
    }
    let row_of = features.row_of();
    let rows: Vec<usize> = test
        .iter()
        .map(|r| {
            row_of.get(r.stimulus.as_str()).copied().ok_or_else(|| {
                CalibrateError::Invalid(format!("no features for test stimulus {}", r.stimulus))
            })
        })
        .collect::<Result<_, _>>()?;
    let width = features.width;
    let pred_sem: Vec<Vec<f32>> = decoded.iter().map(|d| d.embedding.clone()).collect();
    let true_sem: Vec<Vec<f32>> = rows
        .iter()
        .map(|&r| features.semantic_row(r).to_vec())
        .collect();
    let pred_pool: Vec<Vec<f32>> = decoded
        .iter()
        .map(|d| pooled(&d.detail_tokens, width))
        .collect();
    let true_pool: Vec<Vec<f32>> = rows
        .iter()
        .map(|&r| pooled(features.detail_row(r), width))
        .collect();
    let candidates = 100.min(test.len());
    // Layout probe: fit on true tokens of single-object training images, test on predictions.
    let mut probe_rows: Vec<f32> = Vec::new();
    let mut probe_y: Vec<[f64; 2]> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in train_ids {
        if let (Some(p), Some(&r)) = (positions.get(id), row_of.get(id.as_str())) {
            if seen.insert(id.clone()) {
                probe_rows.extend_from_slice(features.detail_row(r));
                probe_y.push(*p);
            }
        }
    }
    let n_fit = probe_y.len();
    for (r, d) in test.iter().zip(decoded) {
        if let Some(p) = positions.get(&r.stimulus) {
            probe_rows.extend_from_slice(&d.detail_tokens);
            probe_y.push(*p);
        }
    }
    let n_test = probe_y.len() - n_fit;
    let layout_probe_r = if n_fit >= 10 && n_test >= 3 {
        let rows = Rows {
            data: &probe_rows,
            cols: features.tokens * width,
        };
        ridge_probe(&rows, &probe_y, n_fit).map_or(f64::NAN, |p| correlation(&p, &probe_y[n_fit..]))
    } else {
        f64::NAN
    };
    let report = DecodingReport {
        test_images: test.len(),
        semantic_identification: bootstrap(&two_way_identification(&pred_sem, &true_sem), 1000, 1),
        detail_identification: bootstrap(&two_way_identification(&pred_pool, &true_pool), 1000, 2),
        retrieval_candidates: candidates,
        semantic_top1: bootstrap(
            &top_k_retrieval(&pred_sem, &true_sem, candidates, 1, 3),
            1000,
            4,
        ),
        layout_probe_r,
        layout_probe_images: (n_fit, n_test),
    };
    Ok(report)
}
