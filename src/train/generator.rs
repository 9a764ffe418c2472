//! `brainmclip train-generator`: the few-step diffusion decoder trained on simulator images,
//! conditioned on the encoder's features of each image computed on the fly (a fresh batch per
//! step, drawn from the seed, so a resumed run sees exactly the batches an uninterrupted one
//! would), or on a folder of images with their features cached (`image_folder.rs`). Conditions are dropped (classifier-free guidance) and noised, optionally also
//! degraded the way brain predictions are — shrunk toward the mean, mixed with another image's
//! (`degrade.rs`); EMA weights are what is saved.
//!
//! Output folder: `generator.json` (config and provenance) and `generator.mpk` (EMA weights,
//! half precision). Evaluation is `generator_eval.rs`.

use std::path::{Path, PathBuf};

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::degrade::{degrade, random_degradation, Degradation, FeatureStats};
use super::encoder::{pixels_tensor, training_stimuli};
use super::image_folder::ImageFolder;
use super::parallel::{run_peers, stable_param_ids, Cluster, ParallelError, Peer};
use crate::model::conditioner::{Conditioner, ConditionerError};
use crate::model::generator::files::{
    load_generator, save_generator, GeneratorFileError, GeneratorInfo, ImageSource,
};
use crate::model::generator::schedule::{scales, seeded_noise};
use crate::model::generator::{Condition, GeneratorConfig, UNet};
use crate::model::targets::targets;
use crate::sim::stimuli::{render, Stimulus};

type Optim<B> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, UNet<B>, B>;

#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error(transparent)]
    Conditioner(#[from] ConditionerError),
    #[error(transparent)]
    Files(#[from] GeneratorFileError),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Parallel(#[from] ParallelError),
}

pub(crate) fn file_err(path: &Path, message: impl std::fmt::Display) -> GeneratorError {
    GeneratorError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorTrainConfig {
    pub seed: u64,
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub ema_decay: f64,
    /// Probability that a row's condition is replaced by the null condition.
    pub condition_dropout: f64,
    /// Conditions get Gaussian noise of up to this many feature SDs (uniform per row).
    pub condition_noise: f64,
    /// Fraction of rows whose condition is degraded like a brain prediction (shrunk toward the
    /// features' mean, mixed with another image's); the others get white noise alone. Off by
    /// default: fine-tuning the demo generator 400 steps at 0.5 raised PixCorr from degraded
    /// features (keep 0.2, mix 0.1) 0.59 → 0.72 but lowered it on the demo subject's real
    /// decodings 0.41 → 0.38 (and 0.35 with mixing up to 1), so the shipped one has none.
    pub brain_like: f64,
    /// A brain-like row keeps between this fraction and all of its own deviation from the mean.
    pub shrink_min: f64,
    /// ... and takes up to this fraction of another image's deviation.
    pub mix_max: f64,
    pub checkpoint_every: usize,
    pub image_size: usize,
    /// The encoder blocks (1-based, inclusive) the detail tokens are averaged over; default: the
    /// encoder's detail layers. `[6, 6]` on the demo encoder conditions on its final block, as
    /// the final-only calibration's targets are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail_layers: Option<(usize, usize)>,
    /// Condition on the detail tokens and the embedding (the default), or on the embedding alone
    /// (what decoders aligned only with CLIP's final embedding use).
    pub detail_tokens: bool,
    /// The UNet's shape; without it, the demo's (`GeneratorConfig::demo`). Token and embedding
    /// sizes always come from the encoder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
}

/// The UNet's shape in a training config (presets in `calibration/generator/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub unshuffle: usize,
    pub channels: Vec<usize>,
    pub blocks: usize,
    pub attention: bool,
    pub groups: usize,
    pub embed_dim: usize,
}

impl GeneratorTrainConfig {
    /// The generator this config trains for `conditioner`'s features.
    pub fn generator_for(&self, conditioner: &Conditioner) -> GeneratorConfig {
        let base = GeneratorConfig {
            detail_tokens: self.detail_tokens,
            ..conditioner.config_for(self.image_size)
        };
        match &self.architecture {
            None => base,
            Some(a) => GeneratorConfig {
                unshuffle: a.unshuffle,
                channels: a.channels.clone(),
                blocks: a.blocks,
                attention: a.attention,
                groups: a.groups,
                embed_dim: a.embed_dim,
                ..base
            },
        }
    }

    /// The encoder in `encoder` with this config's detail layers.
    pub fn conditioner(&self, encoder: &Path) -> Result<Conditioner, GeneratorError> {
        let conditioner = Conditioner::load(encoder)?;
        Ok(match self.detail_layers {
            Some(layers) => conditioner.with_layers(layers)?,
            None => conditioner,
        })
    }
}

impl Default for GeneratorTrainConfig {
    fn default() -> Self {
        GeneratorTrainConfig {
            seed: 11,
            steps: 2000,
            batch: 16,
            learning_rate: 1e-3,
            warmup_steps: 100,
            ema_decay: 0.995,
            condition_dropout: 0.1,
            condition_noise: 0.5,
            brain_like: 0.0,
            shrink_min: 0.1,
            mix_max: 1.0,
            checkpoint_every: 50,
            image_size: 64,
            detail_layers: None,
            detail_tokens: true,
            architecture: None,
        }
    }
}

/// The encoder's features of `stimuli` (CLIP units), to condition the generator on.
pub fn condition(
    conditioner: &Conditioner,
    stimuli: &[Stimulus],
) -> Result<Condition<Flex>, GeneratorError> {
    let t = targets(
        &conditioner.vision,
        pixels_tensor::<Flex>(stimuli, conditioner.image_size, &FlexDevice),
        conditioner.layers.0,
        conditioner.layers.1,
    )
    .map_err(|e| GeneratorError::Invalid(e.to_string()))?;
    Ok(Condition {
        tokens: t.detail,
        semantic: t.semantic,
    })
}

/// Images in -1..1 as [b, 3, s, s].
pub fn image_tensor<B: Backend>(
    stimuli: &[Stimulus],
    size: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mut data = Vec::with_capacity(stimuli.len() * 3 * size * size);
    for s in stimuli {
        let pixels = render(s, size);
        for c in 0..3 {
            data.extend(pixels.iter().map(|p| p[c] * 2.0 - 1.0));
        }
    }
    Tensor::from_data(
        TensorData::new(data, [stimuli.len(), 3, size, size]),
        device,
    )
}

fn to_device<B: Backend, const D: usize>(t: Tensor<Flex, D>, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(t.into_data(), device)
}

/// Degraded, partly dropped conditions for training.
fn augment(
    cond: Condition<Flex>,
    stats: &FeatureStats,
    config: &GeneratorTrainConfig,
    rng: &mut ChaCha8Rng,
) -> Condition<Flex> {
    let [b, _] = cond.semantic.dims();
    let draw = |rng: &mut ChaCha8Rng| -> Vec<Degradation> {
        (0..b)
            .map(|_| {
                random_degradation(
                    rng,
                    config.brain_like,
                    config.shrink_min,
                    config.mix_max,
                    config.condition_noise,
                )
            })
            .collect()
    };
    let (detail, semantic) = (draw(rng), draw(rng));
    let keep: Vec<f32> = (0..b)
        .map(|_| f32::from(rng.random::<f64>() >= config.condition_dropout))
        .collect();
    let cond = degrade(cond, stats, &detail, &semantic, rng);
    let mask = Tensor::<Flex, 1>::from_data(TensorData::new(keep, [b]), &FlexDevice);
    Condition {
        tokens: cond.tokens * mask.clone().reshape([b, 1, 1]),
        semantic: cond.semantic * mask.reshape([b, 1]),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    info: GeneratorInfo,
    step: usize,
    losses: Vec<(usize, f32)>,
}

pub struct GeneratorJob {
    pub encoder: PathBuf,
    /// Train on this folder tree of images instead of the simulator's.
    pub images: Option<PathBuf>,
    /// The share of `images` kept out of training, for evaluation.
    pub heldout_fraction: f64,
    pub config: GeneratorTrainConfig,
    /// A trained generator to start from instead of the seed's weights.
    pub init: Option<PathBuf>,
    pub out: PathBuf,
    pub max_steps: Option<usize>,
    pub progress: bool,
    /// Where the network trains (the encoder's features are computed on the CPU).
    pub device: crate::model::device::DeviceChoice,
}

#[derive(Debug, Clone)]
pub struct GeneratorSummary {
    pub steps_done: usize,
    pub resumed_from: usize,
    pub complete: bool,
    pub losses: Vec<(usize, f32)>,
    pub seconds_per_step: f64,
    pub parameters: usize,
}

/// Trains (or resumes) on the job's device; when all steps are done writes `generator.json`
/// and `generator.mpk`.
pub fn train_generator(job: &GeneratorJob) -> Result<GeneratorSummary, GeneratorError> {
    let device = crate::model::device::select(job.device)
        .map_err(|e| GeneratorError::Invalid(e.to_string()))?;
    train_generator_parallel(job, &Cluster::single(device))?.ok_or_else(|| {
        GeneratorError::Invalid("a one-device training always has a lead peer".into())
    })
}

/// Trains data-parallel on `cluster` (`job.device` is not used). Each step's batch is split
/// across the peers. The process holding the lead peer writes the checkpoints and the
/// generator and returns the summary; the other machines return None.
pub fn train_generator_parallel(
    job: &GeneratorJob,
    cluster: &Cluster,
) -> Result<Option<GeneratorSummary>, GeneratorError> {
    tracing::info!("training the generator on {cluster}");
    // Once per process, before the peers start: they share the folder's cached features.
    let folder = match &job.images {
        Some(dir) => {
            let layers = job.config.conditioner(&job.encoder)?.layers;
            Some(ImageFolder::prepare(
                dir,
                &job.encoder,
                layers,
                &job.out,
                job.heldout_fraction,
                job.progress,
            )?)
        }
        None => None,
    };
    let folder = folder.as_ref();
    let mut results = run_peers(cluster, |peer| {
        crate::with_train_backend!(peer.device, |B, dev| train_generator_on::<B>(
            job, folder, &dev, peer
        ))
    })?;
    Ok(if cluster.is_lead_process() {
        Some(results.swap_remove(0))
    } else {
        None
    })
}

fn train_generator_on<B: AutodiffBackend>(
    job: &GeneratorJob,
    folder: Option<&ImageFolder>,
    device: &B::Device,
    peer: &Peer,
) -> Result<GeneratorSummary, GeneratorError> {
    let config = &job.config;
    if config.batch < 2 || config.steps == 0 || config.checkpoint_every == 0 {
        return Err(GeneratorError::Invalid(
            "batch >= 2, steps >= 1, checkpoint_every >= 1".into(),
        ));
    }
    if config.batch < peer.world {
        return Err(GeneratorError::Invalid(format!(
            "batch {} is smaller than the {} data-parallel peers: each needs a row",
            config.batch, peer.world
        )));
    }
    let conditioner = config.conditioner(&job.encoder)?;
    let stats = match folder {
        Some(f) => f.stats(),
        None => FeatureStats::reference(&conditioner)?,
    };
    let info = GeneratorInfo {
        generator: config.generator_for(&conditioner),
        encoder: job.encoder.display().to_string(),
        detail_layers: conditioner.layers,
        train: serde_json::to_value(config).map_err(|e| GeneratorError::Invalid(e.to_string()))?,
        init: job.init.as_ref().map(|p| p.display().to_string()),
        images: folder.map(|f| ImageSource {
            folder: f.root.display().to_string(),
            images: f.len(),
            heldout: f.heldout.len(),
            heldout_fraction: job.heldout_fraction,
        }),
    };
    // Drawn (or loaded) on the CPU so that every device starts from the same weights.
    let on_cpu = match &job.init {
        Some(dir) => {
            let (found, model) = load_generator::<Flex>(dir, &FlexDevice)?;
            if found.generator != info.generator || found.detail_layers != info.detail_layers {
                return Err(file_err(
                    dir,
                    format!(
                        "cannot start from this generator: it is a {:?} on detail layers {:?}, \
                         this training needs a {:?} on layers {:?}",
                        found.generator, found.detail_layers, info.generator, info.detail_layers
                    ),
                ));
            }
            model
        }
        None => crate::model::seeded_init(&FlexDevice, config.seed, || {
            info.generator.init::<Flex>(&FlexDevice)
        }),
    };
    let fresh = crate::model::device::transfer::<Flex, B, _, _>(
        on_cpu,
        // Built under the seeding lock too: an unlocked init here would draw from the
        // backend's random stream while another peer's thread is drawing its seeded weights.
        crate::model::seeded_init(device, config.seed, || info.generator.init::<B>(device)),
        device,
    )
    .map_err(|e| GeneratorError::Invalid(format!("moving the generator to {device:?}: {e}")))?;
    let fresh = stable_param_ids(fresh);
    let parameters = fresh.num_params();
    let _member = peer.join::<B::InnerBackend>(device)?;
    let adamw = || -> Optim<B> {
        AdamWConfig::new()
            .with_weight_decay(1e-4)
            .with_epsilon(1e-8)
            .init()
    };
    let dir = job.out.join("checkpoint");
    let accept = |s: &State| {
        if s.info == info {
            Ok(())
        } else {
            Err(
                "this checkpoint was made with other settings or another encoder; use a new --out"
                    .to_string(),
            )
        }
    };
    let ckpt = |e: checkpoint::CheckpointError| GeneratorError::File {
        path: e.path,
        message: e.message,
    };
    let full = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let ema_path = dir.join("ema");
    let loaded = checkpoint::load(&dir, fresh.clone(), adamw(), device, accept).map_err(ckpt);
    let loaded = peer.agree::<B::InnerBackend, _, _>(loaded, "loading the checkpoint", device)?;
    let (mut model, mut optim, mut state) = match loaded {
        Some(found) => found,
        None => (
            fresh,
            adamw(),
            State {
                info: info.clone(),
                step: 0,
                losses: Vec::new(),
            },
        ),
    };
    let mut ema: UNet<B::InnerBackend> = if state.step > 0 {
        info.generator
            .init::<B::InnerBackend>(device)
            .load_file(&ema_path, &full, device)
            .map_err(|e| file_err(&ema_path, e))?
    } else {
        model.valid()
    };
    let resumed_from = state.step;
    peer.same_everywhere::<B::InnerBackend>(
        resumed_from as f64,
        "the step to resume from",
        device,
    )?;
    let end = job
        .max_steps
        .map_or(config.steps, |m| (resumed_from + m).min(config.steps));
    let bar = super::progress_bar(
        job.progress && peer.is_lead(),
        config.steps as u64,
        "train-generator",
    );
    bar.set_position(resumed_from as u64);
    let started = std::time::Instant::now();
    for step in resumed_from..end {
        let mut rng = ChaCha8Rng::seed_from_u64(
            config.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ step as u64,
        );
        // Conditions, times and noise are drawn for the whole batch, then this peer takes its
        // rows: every row gets the same draws however the batch is split.
        let mine = peer.rows(config.batch);
        let rows = mine.start..mine.end;
        let (cond, x0) = match folder {
            Some(f) => {
                let batch_rows = f.batch_rows(config.seed, step, config.batch);
                let x0 =
                    f.image_tensor::<B>(&batch_rows[rows.clone()], config.image_size, device)?;
                (f.condition(&batch_rows), x0)
            }
            None => {
                let stimuli =
                    training_stimuli(config.seed.wrapping_add(1_000_003), step, config.batch);
                let x0 = image_tensor::<B>(&stimuli[rows.clone()], config.image_size, device);
                (condition(&conditioner, &stimuli)?, x0)
            }
        };
        let cond = augment(cond, &stats, config, &mut rng);
        let cond = Condition {
            tokens: to_device::<B, 3>(cond.tokens.slice([rows.clone()]), device),
            semantic: to_device::<B, 2>(cond.semantic.slice([rows.clone()]), device),
        };
        let times: Vec<f64> = (0..config.batch).map(|_| rng.random::<f64>()).collect();
        let times = &times[rows.clone()];
        let (a, s) = scales::<B>(times, device);
        let [_, c, h, w] = x0.dims();
        let eps =
            seeded_noise::<B>([config.batch, c, h, w], rng.random(), device).slice([rows.clone()]);
        let xt = x0.clone() * a.clone() + eps.clone() * s.clone();
        let v = eps * a - x0 * s;
        let t = Tensor::<B, 1>::from_data(
            TensorData::new(
                times.iter().map(|&t| t as f32).collect::<Vec<f32>>(),
                [times.len()],
            ),
            device,
        );
        let loss = (model.forward(xt, t, &cond) - v).powi_scalar(2).mean()
            * peer.loss_weight(config.batch);
        let value = loss.clone().into_scalar().elem::<f64>();
        // The whole batch's loss, the same on every peer (so all stop together on a NaN).
        let value = peer.mean::<B::InnerBackend>(&[value], device)?[0] as f32;
        if !value.is_finite() {
            return Err(GeneratorError::Invalid(format!(
                "loss became {value} at step {step}"
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let grads = peer.reduce_grads::<B>(grads)?;
        let lr = config.learning_rate
            * if step < config.warmup_steps {
                (step + 1) as f64 / config.warmup_steps as f64
            } else {
                let x = (step - config.warmup_steps) as f64
                    / (config.steps - config.warmup_steps).max(1) as f64;
                0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * x.min(1.0)).cos())
            };
        model = optim.step(lr, model, grads);
        // Warm-up of the average: early steps follow the model more closely.
        let decay = config.ema_decay.min((1 + step) as f64 / (10 + step) as f64);
        ema = super::ema::update(ema, &model.valid(), decay);
        state.step = step + 1;
        state.losses.push((step, value));
        bar.set_message(format!("loss {value:.4}"));
        bar.inc(1);
        if state.step % config.checkpoint_every == 0 || state.step == end {
            let written = if peer.is_lead() {
                (|| {
                    let _ = std::fs::remove_file(ema_path.with_extension("mpk"));
                    std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
                    ema.clone()
                        .save_file(&ema_path, &full)
                        .map_err(|e| file_err(&ema_path, e))?;
                    checkpoint::save(&dir, &model, &optim, &state).map_err(ckpt)
                })()
            } else {
                Ok(())
            };
            peer.agree::<B::InnerBackend, _, _>(written, "writing the checkpoint", device)?;
        }
    }
    bar.finish();
    let done = end - resumed_from;
    let seconds_per_step = if done > 0 {
        started.elapsed().as_secs_f64() / done as f64
    } else {
        0.0
    };
    let complete = state.step >= config.steps;
    if complete && peer.is_lead() {
        save_generator(&job.out, &info, &ema)?;
    }
    Ok(GeneratorSummary {
        steps_done: state.step,
        resumed_from,
        complete,
        losses: state.losses,
        seconds_per_step,
        parameters,
    })
}
