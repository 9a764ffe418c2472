//! The projector's training loop: normalisation fitted on the training trials, AdamW with a
//! warm-up and cosine schedule, a validation split with early stopping per stream, per-term
//! loss curves, checkpoints every epoch and resume.
//!
//! Early stopping keeps each stream's best epoch: the semantic stream (high-level voxels →
//! image embedding) peaks within a few epochs while the detail stream keeps improving for
//! dozens, so one shared best epoch left the semantic stream overfitted. The saved projector
//! takes the detail encoder, head and decoder from the detail stream's best epoch and the
//! semantic ones from the semantic stream's.

use std::collections::BTreeMap;
use std::path::Path;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::calibrate::{CalibrateConfig, CalibrateError};
use super::checkpoint;
use super::parallel::{stable_param_ids, Peer};
use crate::model::loss::projector_loss;
use crate::model::projector::{Projector, ProjectorConfig};

type Optim<B> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, Projector<B>, B>;

/// Inputs and targets as flat rows, already normalised.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub ids: Vec<String>,
    pub detail: Vec<f32>,
    pub semantic: Vec<f32>,
    pub tokens: Vec<f32>,
    pub embedding: Vec<f32>,
    pub shape: DataShape,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataShape {
    pub detail_voxels: usize,
    pub semantic_voxels: usize,
    pub tokens: usize,
    pub width: usize,
    pub dim: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Rows `rows` as tensors: detail, semantic, tokens, embedding.
    pub fn batch<B: Backend>(
        &self,
        rows: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 3>, Tensor<B, 2>) {
        let s = self.shape;
        let n = rows.len();
        let take = |v: &[f32], w: usize| -> Vec<f32> {
            rows.iter()
                .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                .collect()
        };
        let tc = s.tokens * s.width;
        (
            Tensor::from_data(
                TensorData::new(take(&self.detail, s.detail_voxels), [n, s.detail_voxels]),
                device,
            ),
            Tensor::from_data(
                TensorData::new(
                    take(&self.semantic, s.semantic_voxels),
                    [n, s.semantic_voxels],
                ),
                device,
            ),
            Tensor::from_data(
                TensorData::new(take(&self.tokens, tc), [n, s.tokens, s.width]),
                device,
            ),
            Tensor::from_data(
                TensorData::new(take(&self.embedding, s.dim), [n, s.dim]),
                device,
            ),
        )
    }

    /// The subset `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> Dataset {
        let s = self.shape;
        let take = |v: &[f32], w: usize| -> Vec<f32> {
            rows.iter()
                .flat_map(|&r| v[r * w..(r + 1) * w].iter().copied())
                .collect()
        };
        Dataset {
            ids: rows.iter().map(|&r| self.ids[r].clone()).collect(),
            detail: take(&self.detail, s.detail_voxels),
            semantic: take(&self.semantic, s.semantic_voxels),
            tokens: take(&self.tokens, s.tokens * s.width),
            embedding: take(&self.embedding, s.dim),
            shape: s,
        }
    }
}

/// One epoch's losses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train: f64,
    /// The detail stream's early-stopping score: the weighted validation loss without the
    /// contrastive terms and without the semantic cosine.
    pub validation: f64,
    /// The semantic stream's: 1 - cosine of predicted and true embeddings.
    #[serde(default)]
    pub semantic_validation: f64,
    /// Unweighted validation terms.
    pub terms: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    settings: serde_json::Value,
    epochs_done: usize,
    best_epoch: usize,
    best_validation: f64,
    #[serde(default)]
    best_semantic_epoch: usize,
    #[serde(default = "unset")]
    best_semantic_validation: f64,
    log: Vec<EpochLog>,
    /// Training samples seen and seconds spent, over every call (for the throughput figure).
    #[serde(default)]
    samples_seen: usize,
    #[serde(default)]
    seconds: f64,
}

fn unset() -> f64 {
    f64::INFINITY
}

/// What training did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub epochs_run: usize,
    /// The detail stream's best epoch and score.
    pub best_epoch: usize,
    pub best_validation: f64,
    /// The semantic stream's.
    pub best_semantic_epoch: usize,
    pub best_semantic_validation: f64,
    pub stopped_early: bool,
    pub resumed_from: usize,
    pub samples_per_s: f64,
    pub log: Vec<EpochLog>,
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

/// Validation losses of the model in evaluation mode (no dropout): the detail stream's score,
/// the semantic stream's, and every term. Neither score has the contrastive terms: their value
/// depends on how many rows are compared at once (the whole validation set here, a batch in
/// training) and they keep rising from over-confidence while every per-sample term still
/// improves. Without a semantic cosine term both streams follow the detail score.
fn validate<B: Backend>(
    model: &Projector<B>,
    data: &Dataset,
    config: &CalibrateConfig,
    device: &B::Device,
) -> (f64, f64, BTreeMap<String, f64>) {
    let rows: Vec<usize> = (0..data.len()).collect();
    let (d, s, t, e) = data.batch::<B>(&rows, device);
    let out = model.forward(d.clone(), s.clone());
    let loss = projector_loss(model, &out, d, s, t, e, &config.loss);
    let terms: BTreeMap<String, f64> = loss
        .terms
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.into_scalar().elem::<f64>()))
        .collect();
    let w = &config.loss;
    let weight = |name: &str| match name {
        "token_mse" => w.token_mse,
        "token_cosine" => w.token_cosine,
        "detail_cosine" => w.detail_cosine,
        "self_reconstruction" => w.self_reconstruction,
        "cross_reconstruction" => w.cross_reconstruction,
        "input_l2" => w.input_l2,
        _ => 0.0,
    };
    let detail: f64 = terms.iter().map(|(n, v)| weight(n) * v).sum();
    let semantic = terms.get("semantic_cosine").copied().unwrap_or(detail);
    (detail, semantic, terms)
}

/// Trains the projector on `train`, early-stopping on `validation`; checkpoints in
/// `out/checkpoint`, on `device`, as `peer` of a data-parallel run (`Peer::solo` alone). The
/// weights start from the seed drawn on the CPU, so every device starts from the same model.
/// The lead peer returns the best model (evaluation mode, on the CPU) and the report; the
/// others return None (only the lead writes files).
#[allow(clippy::too_many_arguments)]
pub fn train_projector<B: AutodiffBackend>(
    config: &CalibrateConfig,
    projector: &ProjectorConfig,
    train: &Dataset,
    validation: &Dataset,
    out: &Path,
    progress: bool,
    device: &B::Device,
    peer: &Peer,
) -> Result<Option<(Projector<Flex>, TrainReport)>, CalibrateError> {
    let t = &config.train;
    // Everything that decides the weights; a checkpoint made with other settings is refused.
    let settings = serde_json::json!({
        "projector": projector, "loss": config.loss, "train": t,
        "targets": config.targets, "train_rows": train.len(), "validation_rows": validation.len(),
    });
    let on_cpu =
        crate::model::seeded_init(&FlexDevice, t.seed, || projector.init::<Flex>(&FlexDevice));
    let fresh = crate::model::device::transfer::<Flex, B, _, _>(
        on_cpu,
        // Built under the seeding lock too: an unlocked init here would draw from the
        // backend's random stream while another peer's thread is drawing its seeded weights.
        crate::model::seeded_init(device, t.seed, || projector.init::<B>(device)),
        device,
    )
    .map_err(|e| CalibrateError::Invalid(format!("moving the projector to {device:?}: {e}")))?;
    let fresh = stable_param_ids(fresh);
    let noise = Normal::new(0.0f32, t.input_noise.max(0.0) as f32)
        .map_err(|e| CalibrateError::Invalid(format!("train.input_noise: {e}")))?;
    let _member = peer.join::<B::InnerBackend>(device)?;
    let adamw = || -> Optim<B> {
        AdamWConfig::new()
            .with_weight_decay(t.weight_decay as f32)
            .with_epsilon(1e-8)
            .init()
    };
    let dir = out.join("checkpoint");
    let accept = |s: &State| {
        if s.settings == settings {
            Ok(())
        } else {
            Err("this checkpoint was made with other calibration settings or data; remove it or use another output folder".to_string())
        }
    };
    let ckpt_err = |e: checkpoint::CheckpointError| CalibrateError::File {
        path: e.path,
        message: e.message,
    };
    let loaded = checkpoint::load(&dir, fresh.clone(), adamw(), device, accept).map_err(ckpt_err);
    let loaded = peer.agree::<B::InnerBackend, _, _>(loaded, "loading the checkpoint", device)?;
    let (mut model, mut optim, mut state) = match loaded {
        Some(found) => found,
        None => (
            fresh,
            adamw(),
            State {
                settings: settings.clone(),
                epochs_done: 0,
                best_epoch: 0,
                best_validation: f64::INFINITY,
                best_semantic_epoch: 0,
                best_semantic_validation: f64::INFINITY,
                log: Vec::new(),
                samples_seen: 0,
                seconds: 0.0,
            },
        ),
    };
    let best_path = dir.join("best");
    let best_semantic_path = dir.join("best-semantic");
    let recorder = burn::record::NamedMpkFileRecorder::<burn::record::FullPrecisionSettings>::new();
    let resumed_from = state.epochs_done;
    peer.same_everywhere::<B::InnerBackend>(
        resumed_from as f64,
        "the epoch to resume from",
        device,
    )?;
    let steps_per_epoch = train.len().div_ceil(t.batch.max(1));
    let total_steps = (t.epochs * steps_per_epoch).max(1);
    let warmup = (total_steps / 20).max(1);
    let lr_at = |step: usize| {
        if step < warmup {
            t.learning_rate * (step + 1) as f64 / warmup as f64
        } else {
            let x = (step - warmup) as f64 / (total_steps - warmup).max(1) as f64;
            t.learning_rate
                * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * x.min(1.0)).cos()))
        }
    };
    let bar = super::progress_bar(progress && peer.is_lead(), t.epochs as u64, "calibrate");
    bar.set_position(resumed_from as u64);
    let mut seen = 0usize;
    let mut stopped_early = false;
    for epoch in resumed_from..t.epochs {
        let last_better = state.best_epoch.max(state.best_semantic_epoch);
        if epoch - last_better > t.patience && epoch > 0 && state.best_validation.is_finite() {
            stopped_early = true;
            break;
        }
        let epoch_started = std::time::Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(t.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for (i, rows) in order.chunks(t.batch.max(2)).enumerate() {
            // Every peer skips the same batches: too small to give each peer a row.
            if rows.len() < peer.world.max(2) {
                continue;
            }
            let mine = peer.rows(rows.len());
            let (d, s, tok, emb) = train.batch::<B>(&rows[mine.clone()], device);
            // Noise is drawn for the whole batch, so each row gets the same noise however
            // the batch is split across peers.
            let jitter = |x: Tensor<B, 2>, rng: &mut ChaCha8Rng| {
                let width = x.dims()[1];
                let all: Vec<f32> = (0..rows.len() * width).map(|_| noise.sample(rng)).collect();
                let n = all[mine.start * width..mine.end * width].to_vec();
                x + Tensor::from_data(TensorData::new(n, [mine.len(), width]), device)
            };
            let (d, s) = (jitter(d, &mut rng), jitter(s, &mut rng));
            let out = model.forward(d.clone(), s.clone());
            let loss = projector_loss(&model, &out, d, s, tok, emb, &config.loss).total
                * peer.loss_weight(rows.len());
            total += scalar(loss.clone()) * rows.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let grads = peer.reduce_grads::<B>(grads)?;
            model = optim.step(lr_at(epoch * steps_per_epoch + i), model, grads);
            seen += rows.len();
        }
        // One set of numbers on every peer, so all make the same early-stopping decisions.
        let (val, semantic_val, terms) = validate(&model.valid(), validation, config, device);
        let agreed = peer.mean::<B::InnerBackend>(&[total, val, semantic_val], device)?;
        let (total, val, semantic_val) = (agreed[0], agreed[1], agreed[2]);
        state.log.push(EpochLog {
            epoch,
            train: total / train.len().max(1) as f64,
            validation: val,
            semantic_validation: semantic_val,
            terms,
        });
        let keep = |path: &Path| -> Result<(), CalibrateError> {
            // Replaced, not overwritten in place (and without burn warning about it).
            let _ = std::fs::remove_file(path.with_extension("mpk"));
            model
                .valid()
                .save_file(path, &recorder)
                .map_err(|e| crate::train::calibrate::file_err(path, e))
        };
        let (better, better_semantic) = (
            val < state.best_validation,
            semantic_val < state.best_semantic_validation,
        );
        if better {
            state.best_validation = val;
            state.best_epoch = epoch;
        }
        if better_semantic {
            state.best_semantic_validation = semantic_val;
            state.best_semantic_epoch = epoch;
        }
        state.epochs_done = epoch + 1;
        state.samples_seen += seen;
        state.seconds += epoch_started.elapsed().as_secs_f64();
        seen = 0;
        let written = if peer.is_lead() {
            (|| {
                if better {
                    keep(&best_path)?;
                }
                if better_semantic {
                    keep(&best_semantic_path)?;
                }
                checkpoint::save(&dir, &model, &optim, &state).map_err(ckpt_err)
            })()
        } else {
            Ok(())
        };
        peer.agree::<B::InnerBackend, _, _>(written, "writing the checkpoint", device)?;
        bar.set_message(format!(
            "val {val:.4} (best {:.4} @ {}; semantic {:.4} @ {})",
            state.best_validation,
            state.best_epoch,
            state.best_semantic_validation,
            state.best_semantic_epoch
        ));
        bar.inc(1);
    }
    bar.finish();
    if !peer.is_lead() {
        return Ok(None);
    }
    let load = |path: &Path| {
        projector
            .init::<Flex>(&FlexDevice)
            .load_file(path, &recorder, &FlexDevice)
            .map_err(|e| crate::train::calibrate::file_err(path, e))
    };
    let detail_best = load(&best_path)?;
    // A checkpoint finished before streams stopped separately has no semantic best: the
    // semantic stream then comes from the shared best epoch, as it was trained.
    let semantic_best = if best_semantic_path.with_extension("mpk").exists() {
        load(&best_semantic_path)?
    } else {
        detail_best.clone()
    };
    let best = Projector {
        semantic_encoder: semantic_best.semantic_encoder,
        semantic_head: semantic_best.semantic_head,
        semantic_decoder: semantic_best.semantic_decoder,
        ..detail_best
    };
    Ok(Some((
        best,
        TrainReport {
            epochs_run: state.epochs_done,
            best_epoch: state.best_epoch,
            best_validation: state.best_validation,
            best_semantic_epoch: state.best_semantic_epoch,
            best_semantic_validation: state.best_semantic_validation,
            stopped_early: stopped_early || state.epochs_done < t.epochs,
            resumed_from,
            samples_per_s: if state.seconds > 0.0 {
                state.samples_seen as f64 / state.seconds
            } else {
                0.0
            },
            log: state.log,
        },
    )))
}
