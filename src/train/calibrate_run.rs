//! `calibrate` end to end: responses and targets gathered (`calibrate.rs`), normalisation
//! fitted on the training trials, the projector trained (`projector_train.rs`), the calibration
//! written (`model/calibration.rs`), then scored on the held-out test trials (`evaluate.rs`)
//! into `report.json` with the loss curves in `loss.png`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::calibrate::{
    collect_responses, file_err, stimulus_features, CalibrateConfig, CalibrateError, Response,
};
use super::evaluate::{evaluate_decoding, single_object_positions, DecodingReport};
use super::parallel::{run_peers, Cluster};
use super::projector_train::{train_projector, DataShape, Dataset, EpochLog, TrainReport};
use super::select::{self, CandidateReport};
use crate::chart::{plot_lines, Chart, Series};
use crate::features::FeatureSet;
use crate::model::calibration::{
    column_stats, standardise, Calibration, CalibrationInfo, Normalisation,
};
use crate::model::projector::ProjectorConfig;

#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    /// Where the responses came from: the BIDS runs through the live preprocessing, or a
    /// betas file estimated offline.
    pub responses: String,
    pub targets: String,
    pub detail_layers: (usize, usize),
    pub train_trials: usize,
    pub validation_trials: usize,
    pub test_images: usize,
    pub parameters: Vec<(String, usize)>,
    /// The setting kept (`base` without a `[select]` grid) and what the validation split said
    /// of every one tried; the test trials were scored for the kept one only.
    pub chosen: String,
    pub selection: Vec<CandidateReport>,
    pub training: TrainReport,
    /// Where the projector was trained.
    pub device: String,
    pub test: DecodingReport,
    pub seconds: f64,
}

/// Rows of `responses` with their targets, normalised by `norm`.
fn dataset(
    responses: &[Response],
    features: &FeatureSet,
    norm: &Normalisation,
) -> Result<Dataset, CalibrateError> {
    let row_of = features.row_of();
    let mut ds = Dataset {
        ids: Vec::new(),
        detail: Vec::new(),
        semantic: Vec::new(),
        tokens: Vec::new(),
        embedding: Vec::new(),
        shape: DataShape {
            detail_voxels: norm.detail_mean.len(),
            semantic_voxels: norm.semantic_mean.len(),
            tokens: features.tokens,
            width: features.width,
            dim: features.dim,
        },
    };
    for r in responses {
        let &row = row_of.get(r.stimulus.as_str()).ok_or_else(|| {
            CalibrateError::Invalid(format!(
                "stimulus {} is in the events but has no image in the stimuli folder",
                r.stimulus
            ))
        })?;
        ds.ids.push(r.stimulus.clone());
        ds.detail.extend_from_slice(&r.detail);
        ds.semantic.extend_from_slice(&r.semantic);
        ds.tokens.extend_from_slice(features.detail_row(row));
        ds.embedding.extend_from_slice(features.semantic_row(row));
    }
    let s = ds.shape;
    standardise(&mut ds.detail, &norm.detail_mean, &norm.detail_std);
    standardise(&mut ds.semantic, &norm.semantic_mean, &norm.semantic_std);
    standardise(&mut ds.tokens, &norm.token_mean, &norm.token_std);
    standardise(&mut ds.embedding, &norm.embedding_mean, &norm.embedding_std);
    debug_assert_eq!(ds.tokens.len(), ds.len() * s.tokens * s.width);
    Ok(ds)
}

/// Normalisation statistics of the training trials and their targets.
fn fit_normalisation(
    train: &[Response],
    features: &FeatureSet,
) -> Result<Normalisation, CalibrateError> {
    let first = train
        .first()
        .ok_or_else(|| CalibrateError::Invalid("no training trials in the runs' events".into()))?;
    let (vd, vs) = (first.detail.len(), first.semantic.len());
    let detail: Vec<f32> = train
        .iter()
        .flat_map(|r| r.detail.iter().copied())
        .collect();
    let semantic: Vec<f32> = train
        .iter()
        .flat_map(|r| r.semantic.iter().copied())
        .collect();
    let row_of = features.row_of();
    let mut tokens = Vec::new();
    let mut embedding = Vec::new();
    for r in train {
        if let Some(&row) = row_of.get(r.stimulus.as_str()) {
            tokens.extend_from_slice(features.detail_row(row));
            embedding.extend_from_slice(features.semantic_row(row));
        }
    }
    let (detail_mean, detail_std) = column_stats(&detail, vd);
    let (semantic_mean, semantic_std) = column_stats(&semantic, vs);
    let (token_mean, token_std) = column_stats(&tokens, features.width);
    let (embedding_mean, embedding_std) = column_stats(&embedding, features.dim);
    Ok(Normalisation {
        detail_mean,
        detail_std,
        semantic_mean,
        semantic_std,
        token_mean,
        token_std,
        embedding_mean,
        embedding_std,
    })
}

/// The training trials' rows held out for validation and those trained on, as `calibrate`
/// splits them (`eval --ridge` splits the same way from the same settings).
pub fn validation_split(
    trials: usize,
    settings: &super::calibrate::TrainSettings,
) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..trials).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(settings.seed));
    let n_val = ((trials as f64 * settings.validation_fraction).round() as usize)
        .clamp(2, trials.saturating_sub(2).max(2));
    let train = order.split_off(n_val.min(order.len()));
    (order, train)
}

/// What `projector.json` says of a calibration trained with `config`.
fn calibration_info(
    config: &CalibrateConfig,
    projector: ProjectorConfig,
    layers: (usize, usize),
) -> Result<CalibrationInfo, CalibrateError> {
    Ok(CalibrationInfo {
        projector,
        targets: serde_json::to_value(config.targets)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        detail_layers: layers,
        encoder: config.encoder.display().to_string(),
        subject: config.subject.clone(),
        preprocess: Some(crate::model::calibration::SampleSettings::of(
            &config.session_config()?.preprocess,
        )),
    })
}

/// Calibrates and evaluates on `config.device`; everything lands in `config.out`.
pub fn run_calibration(
    config: &CalibrateConfig,
    progress: bool,
) -> Result<CalibrationReport, CalibrateError> {
    let cluster = Cluster::single(crate::model::device::select(config.device)?);
    run_calibration_on(config, &cluster, progress)?.ok_or_else(|| {
        CalibrateError::Invalid("a one-device calibration always has a lead peer".into())
    })
}

/// Calibrates on `cluster` (data-parallel when it has several devices or machines) and
/// evaluates. The process holding the lead peer writes everything to `config.out` and returns
/// the report; the other machines return None once training is done.
pub fn run_calibration_on(
    config: &CalibrateConfig,
    cluster: &Cluster,
    progress: bool,
) -> Result<Option<CalibrationReport>, CalibrateError> {
    let started = std::time::Instant::now();
    let layers = config.layers()?;
    let features = stimulus_features(config, layers)?;
    let responses = collect_responses(config)?;
    let norm = fit_normalisation(&responses.train, &features)?;
    let all = dataset(&responses.train, &features, &norm)?;
    let (val_rows, train_rows) = validation_split(all.len(), &config.train);
    let (train, validation) = (all.subset(&train_rows), all.subset(&val_rows));
    let s = all.shape;
    let positions = single_object_positions(&config.bids.join("stimuli"))?;
    // The validation trials as responses, scored like the test trials (single trials here).
    let validation_responses: Vec<Response> = val_rows
        .iter()
        .map(|&i| responses.train[i].clone())
        .collect();
    let fit_ids: Vec<String> = train_rows
        .iter()
        .map(|&i| responses.train[i].stimulus.clone())
        .collect();
    let candidates = select::candidates(config)?;
    let mut selection: Vec<CandidateReport> = Vec::new();
    let mut kept: Option<(Calibration<Flex>, TrainReport, usize)> = None;
    for candidate in &candidates {
        let c = &candidate.config;
        let projector = ProjectorConfig {
            detail_voxels: s.detail_voxels,
            semantic_voxels: s.semantic_voxels,
            embed_dim: c.model.embed_dim,
            blocks: c.model.blocks,
            dropout: c.model.dropout,
            detail_tokens: s.tokens,
            detail_width: s.width,
            token_rank: c.model.token_rank,
            semantic_dim: s.dim,
        };
        // With a grid each candidate checkpoints in its own folder, so each resumes alone.
        let dir = if candidates.len() == 1 {
            config.out.clone()
        } else {
            config.out.join("select").join(&candidate.name)
        };
        tracing::info!(
            "training the projector on {cluster} ({} of {}: {})",
            selection.len() + 1,
            candidates.len(),
            candidate.name
        );
        let mut results = run_peers(cluster, |peer| {
            crate::with_train_backend!(peer.device, |B, dev| train_projector::<B>(
                c,
                &projector,
                &train,
                &validation,
                &dir,
                progress,
                &dev,
                peer,
            ))
        })?;
        let Some((model, training)) = results.swap_remove(0) else {
            continue;
        };
        let trained = Calibration {
            info: calibration_info(c, projector, layers)?,
            norm: norm.clone(),
            projector: model,
            dir,
        };
        let (on_validation, _) = evaluate_decoding(
            &trained,
            &validation_responses,
            &fit_ids,
            &features,
            &positions,
        )?;
        let report = CandidateReport::new(candidate, on_validation, &training);
        tracing::info!(
            "{}: validation semantic 2-way {}, pooled detail 2-way {}",
            candidate.name,
            report.validation.semantic_identification,
            report.validation.detail_identification
        );
        selection.push(report);
        if select::best(&selection) == Some(selection.len() - 1) {
            kept = Some((trained, training, selection.len() - 1));
        }
    }
    let Some((trained, training, chosen)) = kept else {
        tracing::info!("training done; the lead node writes the calibration");
        return Ok(None);
    };
    selection[chosen].chosen = true;
    let (model, info) = (trained.projector, trained.info);
    let parameters = model
        .parameter_counts()
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
    Calibration::<Flex>::save(&config.out, &info, &norm, &model)
        .map_err(|e| file_err(&config.out, e))?;
    let calibration = Calibration::<Flex>::load(&config.out, &Default::default())
        .map_err(|e| file_err(&config.out, e))?;
    let train_ids: Vec<String> = responses.train.iter().map(|r| r.stimulus.clone()).collect();
    let (test, _) = evaluate_decoding(
        &calibration,
        &responses.test,
        &train_ids,
        &features,
        &positions,
    )?;
    let report = CalibrationReport {
        responses: match &config.betas {
            Some(b) => format!("betas {}", b.file.display()),
            None => format!(
                "{} BIDS runs through the live preprocessing",
                responses.runs.len()
            ),
        },
        device: cluster.to_string(),
        targets: info.targets.clone(),
        detail_layers: layers,
        train_trials: train.len(),
        validation_trials: validation.len(),
        test_images: responses.test.len(),
        parameters,
        chosen: selection[chosen].name.clone(),
        selection,
        training,
        test,
        seconds: started.elapsed().as_secs_f64(),
    };
    let path = config.out.join("report.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| file_err(&path, e))?;
    crate::atomic::write_atomic(&path, text.as_bytes()).map_err(|e| file_err(&path, e))?;
    plot_losses(&report.training.log, &config.out.join("loss.png"))?;
    Ok(Some(report))
}

/// `loss.png`: the weighted training loss, the two streams' early-stopping scores and every
/// unweighted validation term, per epoch, on a log axis.
pub fn plot_losses(log: &[EpochLog], png: &Path) -> Result<(), CalibrateError> {
    let series = |name: &str, value: &dyn Fn(&EpochLog) -> f64| Series {
        name: name.to_string(),
        points: log.iter().map(value).collect(),
    };
    let terms: BTreeSet<&String> = log.iter().flat_map(|l| l.terms.keys()).collect();
    let mut curves = vec![
        series("training (weighted total)", &|l| l.train),
        series("validation, detail stream's score", &|l| l.validation),
        series("validation, semantic 1 - cosine", &|l| {
            l.semantic_validation
        }),
    ];
    curves.extend(terms.into_iter().map(|t| {
        series(&format!("validation term {t}"), &|l| {
            l.terms.get(t).copied().unwrap_or(f64::NAN)
        })
    }));
    let chart = Chart {
        title: "Projector training: losses per epoch",
        x_label: "epoch",
        y_label: "loss (log scale)",
        log_y: true,
    };
    plot_lines(png, &chart, &curves).map_err(|e| CalibrateError::File {
        path: e.path,
        message: e.message,
    })
}

/// Redraws `loss.png` from the `report.json` a calibration wrote in `out` (no training).
pub fn replot(out: &Path) -> Result<PathBuf, CalibrateError> {
    let path = out.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
    let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
    let log: Vec<EpochLog> = serde_json::from_value(report["training"]["log"].clone())
        .map_err(|e| file_err(&path, format!("no training log: {e}")))?;
    let png = out.join("loss.png");
    plot_losses(&log, &png)?;
    Ok(png)
}
