//! `brainmclip train-encoder`: the demo world's own CLIP. Both towers of `model/clip.rs` and
//! `model/clip_text.rs` with a small config, trained contrastively (symmetric InfoNCE with a
//! learned temperature) on simulator images and their captions, drawn fresh for every step from
//! the seed (so a resumed run sees exactly the batches an uninterrupted one would).
//!
//! The result is written as a Hugging Face CLIPModel folder (`model/save.rs`) with its own
//! `tokenizer.json` (`demo_text.rs`), so `features`, `calibrate` and the live path load it like
//! real CLIP weights. Evaluation (retrieval, the layout probe) is `encoder_eval.rs`.

use std::path::{Path, PathBuf};

use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{checkpoint, demo_text};
use crate::model::clip::VisionConfig;
use crate::model::clip_text::TextConfig;
use crate::model::loss::info_nce;
use crate::model::preprocess::ImageProcessor;
use crate::model::save::{save_clip, Clip, SaveError};
use crate::model::tokenizer::{ClipTokenizer, TokenizerError};
use crate::sim::stimuli::{random_stimulus, render, to_rgb8, Stimulus};

type Train = Autodiff<Flex>;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Save(#[from] SaveError),
    #[error("{0}")]
    Invalid(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Everything that decides the trained weights. Stored in the checkpoint: a resume with a
/// different config is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderTrainConfig {
    pub seed: u64,
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub checkpoint_every: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub width: usize,
    pub vision_layers: usize,
    pub text_width: usize,
    pub text_layers: usize,
    pub heads: usize,
    pub projection_dim: usize,
    /// Text context length (the longest caption is 33 tokens with start and end).
    pub context: usize,
    /// Blocks averaged for the detail target, 1-based, inclusive.
    pub detail_layers: (usize, usize),
}

impl Default for EncoderTrainConfig {
    fn default() -> Self {
        EncoderTrainConfig {
            seed: 7,
            steps: 1200,
            batch: 96,
            learning_rate: 1e-3,
            warmup_steps: 60,
            weight_decay: 0.05,
            checkpoint_every: 50,
            image_size: 64,
            patch_size: 8,
            width: 128,
            vision_layers: 6,
            text_width: 128,
            text_layers: 3,
            heads: 4,
            projection_dim: 128,
            context: 40,
            detail_layers: (2, 5),
        }
    }
}

impl EncoderTrainConfig {
    pub fn vision(&self) -> VisionConfig {
        VisionConfig {
            image_size: self.image_size,
            patch_size: self.patch_size,
            hidden_size: self.width,
            intermediate_size: 4 * self.width,
            num_hidden_layers: self.vision_layers,
            num_attention_heads: self.heads,
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".into(),
            num_channels: 3,
        }
    }

    pub fn text(&self) -> TextConfig {
        TextConfig {
            vocab_size: demo_text::vocabulary().len(),
            hidden_size: self.text_width,
            intermediate_size: 4 * self.text_width,
            num_hidden_layers: self.text_layers,
            num_attention_heads: self.heads,
            max_position_embeddings: self.context,
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".into(),
            eos_token_id: demo_text::EOS_ID as usize,
        }
    }

    /// A Hugging Face CLIPModel `config.json`, plus our own section (detail layers, training).
    pub fn hf_config(&self) -> serde_json::Value {
        let v = self.vision();
        let t = self.text();
        serde_json::json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "vision_config": {
                "image_size": v.image_size, "patch_size": v.patch_size,
                "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
                "num_hidden_layers": v.num_hidden_layers,
                "num_attention_heads": v.num_attention_heads,
                "layer_norm_eps": v.layer_norm_eps, "hidden_act": v.hidden_act,
                "num_channels": v.num_channels, "projection_dim": self.projection_dim,
            },
            "text_config": {
                "vocab_size": t.vocab_size, "hidden_size": t.hidden_size,
                "intermediate_size": t.intermediate_size,
                "num_hidden_layers": t.num_hidden_layers,
                "num_attention_heads": t.num_attention_heads,
                "max_position_embeddings": t.max_position_embeddings,
                "layer_norm_eps": t.layer_norm_eps, "hidden_act": t.hidden_act,
                "bos_token_id": demo_text::BOS_ID, "eos_token_id": t.eos_token_id,
                "pad_token_id": demo_text::EOS_ID, "projection_dim": self.projection_dim,
            },
            "brainmclip": {
                "detail_layers": [self.detail_layers.0, self.detail_layers.1],
                "trained_by": "brainmclip train-encoder",
                "train": self,
            },
        })
    }

    /// A fresh model, its weights drawn from the seed.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Clip<B> {
        crate::model::seeded_init(device, self.seed, || self.init_unseeded(device))
    }

    fn init_unseeded<B: Backend>(&self, device: &B::Device) -> Clip<B> {
        Clip {
            vision: self.vision().init(Some(self.projection_dim), device),
            text: self.text().init(Some(self.projection_dim), device),
            // log(1 / 0.07), CLIP's starting temperature.
            logit_scale: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![(1.0f32 / 0.07).ln()], [1]),
                device,
            )),
        }
    }

    fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.steps - self.warmup_steps).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let floor = 0.05 * self.learning_rate;
        floor + (self.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }

    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Invalid(m));
        if !self.image_size.is_multiple_of(self.patch_size) {
            return bad(format!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if !self.width.is_multiple_of(self.heads) || !self.text_width.is_multiple_of(self.heads) {
            return bad(format!(
                "widths must be multiples of heads ({})",
                self.heads
            ));
        }
        let (a, b) = self.detail_layers;
        if !(1 <= a && a <= b && b <= self.vision_layers) {
            return bad(format!(
                "detail_layers {a}-{b}: expected 1 <= first <= last <= {}",
                self.vision_layers
            ));
        }
        if self.batch < 2 || self.steps == 0 || self.checkpoint_every == 0 {
            return bad("batch >= 2, steps >= 1 and checkpoint_every >= 1 are required".into());
        }
        Ok(())
    }
}

/// The stimuli of training step `step`: a stream of its own per step.
pub fn training_stimuli(seed: u64, step: usize, batch: usize) -> Vec<Stimulus> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64);
    (0..batch)
        .map(|i| random_stimulus(&mut rng, format!("train-{step}-{i}")))
        .collect()
}

/// Held-out stimuli: a stream no training step draws from.
pub fn heldout_stimuli(seed: u64, n: usize) -> Vec<Stimulus> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xD1B5_4A32_D192_ED03);
    (0..n)
        .map(|i| random_stimulus(&mut rng, format!("heldout-{i:05}")))
        .collect()
}

/// `[3, size, size]` model input of a stimulus, through the same 8-bit image and
/// CLIPImageProcessor path as a PNG on disk (so `features` on saved images sees the same).
pub fn stimulus_pixels(stimulus: &Stimulus, size: usize) -> Vec<f32> {
    let bytes = to_rgb8(&render(stimulus, size));
    let image = RgbImage::from_raw(size as u32, size as u32, bytes)
        .unwrap_or_else(|| RgbImage::new(size as u32, size as u32));
    ImageProcessor::clip(size).process(&image)
}

/// A batch of images as one tensor.
pub fn pixels_tensor<B: Backend>(
    stimuli: &[Stimulus],
    size: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let data: Vec<f32> = stimuli
        .iter()
        .flat_map(|s| stimulus_pixels(s, size))
        .collect();
    Tensor::from_data(
        TensorData::new(data, [stimuli.len(), 3, size, size]),
        device,
    )
}

/// Writes `tokenizer.json` into `dir` and opens it.
pub fn demo_tokenizer(dir: &Path, context: usize) -> Result<ClipTokenizer, TrainError> {
    let path = dir.join("tokenizer.json");
    let text = demo_text::tokenizer_json().to_string();
    crate::atomic::write_atomic(&path, text.as_bytes()).map_err(|e| file_err(&path, e))?;
    Ok(ClipTokenizer::from_file(
        &path,
        context,
        demo_text::EOS_ID,
        demo_text::EOS_ID,
    )?)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    config: EncoderTrainConfig,
    /// Steps done.
    step: usize,
    /// (step, loss) for every step done.
    losses: Vec<(usize, f32)>,
}

pub struct EncoderJob {
    pub config: EncoderTrainConfig,
    pub out: PathBuf,
    /// Stop after this many steps in this run (a later run resumes from the checkpoint).
    pub max_steps: Option<usize>,
    pub progress: bool,
}

#[derive(Debug, Clone)]
pub struct EncoderSummary {
    pub steps_done: usize,
    pub resumed_from: usize,
    pub complete: bool,
    pub losses: Vec<(usize, f32)>,
}

type Optim = burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, Clip<Train>, Train>;

fn load_checkpoint(
    dir: &Path,
    config: &EncoderTrainConfig,
    device: &FlexDevice,
) -> Result<Option<(Clip<Train>, Optim, CheckpointState)>, TrainError> {
    let accept = |state: &CheckpointState| {
        if &state.config == config {
            Ok(())
        } else {
            Err("the checkpoint was made with another training config; use a new --out or the same settings".to_string())
        }
    };
    checkpoint::load(
        dir,
        config.init::<Train>(device),
        adamw(config),
        device,
        accept,
    )
    .map_err(|e| TrainError::File {
        path: e.path,
        message: e.message,
    })
}

fn adamw(config: &EncoderTrainConfig) -> Optim {
    AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .with_epsilon(1e-8)
        .init()
}

/// One contrastive step's loss (also used by tests).
pub fn contrastive_loss<B: Backend>(
    model: &Clip<B>,
    stimuli: &[Stimulus],
    tokenizer: &ClipTokenizer,
    size: usize,
    device: &B::Device,
) -> Result<Tensor<B, 1>, TrainError> {
    let ids = stimuli
        .iter()
        .map(|s| tokenizer.encode(&s.caption))
        .collect::<Result<Vec<_>, _>>()?;
    let image = model
        .vision
        .forward(pixels_tensor(stimuli, size, device), false)
        .image_embeds;
    let text = model.text.forward(&ids, device).text_embeds;
    let (Some(image), Some(text)) = (image, text) else {
        return Err(TrainError::Invalid(
            "the demo CLIP needs both projections".into(),
        ));
    };
    // CLIP clamps the learned scale at 100.
    let scale = model.logit_scale.val().clamp_max(100f32.ln()).exp();
    Ok(info_nce(image, text, scale))
}

/// Trains (or resumes) and, when all steps are done, writes the Hugging Face folder.
pub fn train_encoder(job: &EncoderJob) -> Result<EncoderSummary, TrainError> {
    let config = &job.config;
    config.validate()?;
    let device = FlexDevice;
    let checkpoint_dir = job.out.join("checkpoint");
    std::fs::create_dir_all(&job.out).map_err(|e| file_err(&job.out, e))?;
    let tokenizer = demo_tokenizer(&job.out, config.context)?;
    let (mut model, mut optim, mut state) = match load_checkpoint(&checkpoint_dir, config, &device)?
    {
        Some(found) => found,
        None => (
            config.init::<Train>(&device),
            adamw(config),
            CheckpointState {
                config: config.clone(),
                step: 0,
                losses: Vec::new(),
            },
        ),
    };
    let resumed_from = state.step;
    let end = job
        .max_steps
        .map_or(config.steps, |m| (resumed_from + m).min(config.steps));
    let bar = crate::train::progress_bar(job.progress, config.steps as u64, "train-encoder");
    bar.set_position(resumed_from as u64);
    for step in resumed_from..end {
        let stimuli = training_stimuli(config.seed, step, config.batch);
        let loss = contrastive_loss(&model, &stimuli, &tokenizer, config.image_size, &device)?;
        let value = loss.clone().into_scalar().elem::<f32>();
        if !value.is_finite() {
            return Err(TrainError::Invalid(format!(
                "loss became {value} at step {step}"
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(config.learning_rate_at(step), model, grads);
        state.step = step + 1;
        state.losses.push((step, value));
        bar.set_message(format!("loss {value:.3}"));
        bar.inc(1);
        if state.step % config.checkpoint_every == 0 || state.step == end {
            checkpoint::save(&checkpoint_dir, &model, &optim, &state).map_err(|e| {
                TrainError::File {
                    path: e.path,
                    message: e.message,
                }
            })?;
        }
    }
    bar.finish();
    let complete = state.step >= config.steps;
    if complete {
        save_clip(&model.valid(), &config.hf_config(), &job.out, true)?;
    }
    Ok(EncoderSummary {
        steps_done: state.step,
        resumed_from,
        complete,
        losses: state.losses,
    })
}
