//! The generator half of decoding: predicted features → an image, on a worker thread that always
//! takes the newest waiting trial, so image generation never delays the feedback and a slow
//! device skips (and counts) trials rather than falling ever further behind. It does not decode
//! samples (`decoder`).
//!
//! `decode.generator` is either our two-stream generator (`train-generator`; detail tokens and
//! semantic embedding) or a diffusers unCLIP image-variation folder (Karlo; `model_index.json`),
//! which draws from the semantic embedding alone: the detail stream is still decoded and logged,
//! but nothing is drawn from it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use burn::DispatchDevice;

use crate::model::device::{live_device, select, LiveBackend};
use burn::prelude::*;
use crossbeam_channel::{unbounded, Receiver};
use serde::Serialize;

use super::decoder::{DecodeError, DecodedTrial};
use crate::clock::now_ns;
use crate::config::DecodeConfig;
use crate::model::generator::files::{load_generator, GeneratorInfo};
use crate::model::generator::schedule::{sample, SamplerSettings};
use crate::model::generator::{Condition, UNet};
use crate::model::unclip::{load_unclip, SeededNoise, Unclip};

/// What the calibration predicts, for checking a generator against it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predicted {
    /// Detail tokens (class + grid²) and their width.
    pub tokens: usize,
    pub width: usize,
    /// Semantic embedding size.
    pub dim: usize,
    /// The root mean square norm of the training images' embeddings, from the calibration's
    /// normalisation. The projector's cosine losses leave the scale of its embedding free (it
    /// comes out ~2x too long), and an unCLIP decoder trained on real CLIP embeddings reads
    /// length as content; predictions are rescaled to this norm before it draws.
    pub embedding_norm: Option<f32>,
}

impl Predicted {
    /// The RMS norm sqrt(Σ mean² + sd²) of embeddings with these per-dimension statistics.
    pub fn rms_norm(mean: &[f32], sd: &[f32]) -> f32 {
        mean.iter()
            .zip(sd)
            .map(|(m, s)| f64::from(m * m + s * s))
            .sum::<f64>()
            .sqrt() as f32
    }
}

/// The two kinds of `decode.generator`.
enum Drawer {
    Own {
        model: Box<UNet<LiveBackend>>,
        settings: SamplerSettings,
    },
    Unclip {
        pipeline: Box<Unclip<LiveBackend>>,
        settings: crate::model::unclip::SampleSettings,
        seed: u64,
        embedding_norm: Option<f32>,
    },
}

/// One generated image.
#[derive(Debug, Clone, Serialize)]
pub struct Reconstruction {
    pub trial: u64,
    pub stimulus: Option<String>,
    pub sample_ns: u64,
    pub decoded_ns: u64,
    pub generated_ns: u64,
    /// Newer trials were waiting, so this many older ones were skipped before it.
    pub skipped_before: usize,
    pub size: usize,
    #[serde(skip)]
    pub rgb: Vec<u8>,
}

type Slot = Arc<(Mutex<Option<DecodedTrial>>, Condvar)>;

/// The generator worker: `submit` never blocks; the worker draws the newest waiting trial.
pub struct Generation {
    slot: Slot,
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicUsize>,
    /// The drawn images, when `start` collects them itself (`finish` returns them).
    collected: Option<Receiver<Reconstruction>>,
    thread: Option<JoinHandle<()>>,
    warmup_ms: f64,
}

impl Generation {
    /// Loads the generator in `dir` (checked against the projector's feature shapes) and starts
    /// its worker; drawn images are kept until `finish`.
    pub fn start(
        dir: &Path,
        config: &DecodeConfig,
        predicted: Predicted,
    ) -> Result<Generation, DecodeError> {
        let (tx, rx) = unbounded();
        let mut generation =
            Generation::start_into(dir, config, predicted, move |r| tx.send(r).is_ok())?;
        generation.collected = Some(rx);
        Ok(generation)
    }

    /// As `start`, each drawn image handed to `deliver` on the worker thread (which stops when
    /// `deliver` returns false).
    pub fn start_into(
        dir: &Path,
        config: &DecodeConfig,
        predicted: Predicted,
        deliver: impl Fn(Reconstruction) -> bool + Send + 'static,
    ) -> Result<Generation, DecodeError> {
        let device = live_device(select(config.device)?);
        let file_err = |message: String| DecodeError::File {
            path: dir.to_owned(),
            message,
        };
        let Predicted {
            tokens, width, dim, ..
        } = predicted;
        let (drawer, size) = if dir.join("model_index.json").exists() {
            let loaded =
                load_unclip::<LiveBackend>(dir, &device).map_err(|e| file_err(e.to_string()))?;
            let pipeline = loaded.pipeline;
            if pipeline.embedding_dim != dim {
                return Err(file_err(format!(
                    "this unCLIP decoder draws from {}-d CLIP image embeddings, but the calibration predicts {dim}-d ones (Karlo needs ViT-L/14's 768)",
                    pipeline.embedding_dim
                )));
            }
            tracing::info!(
                "decode.generator {} is an unCLIP decoder: it draws from the semantic embedding only (rescaled to norm {:?}); the detail stream is decoded and logged, not drawn from",
                dir.display(),
                predicted.embedding_norm
            );
            let size = pipeline.super_res_size;
            let settings = crate::model::unclip::SampleSettings {
                decoder_steps: config.steps.max(1),
                super_res_steps: config.steps.max(1),
                guidance_scale: config.guidance as f32,
            };
            (
                Drawer::Unclip {
                    pipeline: Box::new(pipeline),
                    settings,
                    seed: config.seed,
                    embedding_norm: predicted.embedding_norm,
                },
                size,
            )
        } else {
            let (info, model): (GeneratorInfo, UNet<LiveBackend>) =
                load_generator(dir, &device).map_err(|e| file_err(e.to_string()))?;
            let g = &info.generator;
            let g_tokens = g.token_grid * g.token_grid + 1;
            if g_tokens != tokens || g.token_width != width || g.semantic_dim != dim {
                return Err(DecodeError::Mismatch {
                    generator: dir.to_owned(),
                    generator_tokens: g_tokens,
                    generator_width: g.token_width,
                    generator_dim: g.semantic_dim,
                    tokens,
                    width,
                    dim,
                });
            }
            let settings = SamplerSettings {
                steps: config.steps.max(1),
                guidance: config.guidance,
                seed: config.seed,
                start: 1.0,
                time_power: config.time_power,
            };
            (
                Drawer::Own {
                    model: Box::new(model),
                    settings,
                },
                g.image_size,
            )
        };
        let slot: Slot = Arc::new((Mutex::new(None), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let skipped = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            slot: slot.clone(),
            stop: stop.clone(),
            skipped: skipped.clone(),
            deliver: Box::new(deliver),
            drawer,
            device,
            size,
            tokens,
            width,
        };
        // Kernels compile and autotune at first use: pay that now, at the live shapes, not on
        // the first trial.
        let started = std::time::Instant::now();
        worker
            .draw(&vec![0.0; tokens * width], &vec![0.0; dim])
            .map_err(file_err)?;
        let warmup_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            "generator warmed up on {:?} in {warmup_ms:.0} ms ({} steps, guidance {})",
            worker.device,
            config.steps.max(1),
            config.guidance
        );
        let thread = std::thread::Builder::new()
            .name("generate".into())
            .spawn(move || worker.run())
            .map_err(|e| DecodeError::File {
                path: dir.to_owned(),
                message: format!("cannot start the generator thread: {e}"),
            })?;
        Ok(Generation {
            slot,
            stop,
            skipped,
            collected: None,
            thread: Some(thread),
            warmup_ms,
        })
    }

    /// Offers a trial; a trial still waiting is replaced (and counted as skipped).
    pub fn submit(&self, trial: DecodedTrial) {
        let (lock, cv) = &*self.slot;
        let mut pending = lock.lock().unwrap_or_else(|p| p.into_inner());
        if pending.replace(trial).is_some() {
            self.skipped.fetch_add(1, Ordering::SeqCst);
        }
        cv.notify_one();
    }

    /// How long the start-up pass (one image at the live shapes) took.
    pub fn warmup_ms(&self) -> f64 {
        self.warmup_ms
    }

    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::SeqCst)
    }

    /// True while a trial waits for the worker.
    pub fn waiting(&self) -> bool {
        self.slot.0.lock().is_ok_and(|p| p.is_some())
    }

    /// Waits until the worker has drawn every trial offered, then stops it; returns the images
    /// `start` collected (none with `start_into`: they were delivered).
    pub fn finish(mut self) -> Vec<Reconstruction> {
        let (lock, cv) = &*self.slot;
        {
            let mut pending = lock.lock().unwrap_or_else(|p| p.into_inner());
            while pending.is_some() {
                pending = cv.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.collected
            .take()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.slot.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    slot: Slot,
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicUsize>,
    deliver: Box<dyn Fn(Reconstruction) -> bool + Send>,
    drawer: Drawer,
    device: DispatchDevice,
    size: usize,
    tokens: usize,
    width: usize,
}

impl Worker {
    /// One image for these features: CHW values in -1..1.
    fn draw(&self, tokens: &[f32], embedding: &[f32]) -> Result<Vec<f32>, String> {
        let semantic = Tensor::<LiveBackend, 2>::from_data(
            TensorData::new(embedding.to_vec(), [1, embedding.len()]),
            &self.device,
        );
        let image = match &self.drawer {
            Drawer::Own { model, settings } => {
                let cond = Condition {
                    tokens: Tensor::<LiveBackend, 3>::from_data(
                        TensorData::new(tokens.to_vec(), [1, self.tokens, self.width]),
                        &self.device,
                    ),
                    semantic,
                };
                sample(model, &cond, self.size, *settings, &self.device)
            }
            Drawer::Unclip {
                pipeline,
                settings,
                seed,
                embedding_norm,
            } => {
                let semantic = match embedding_norm {
                    Some(norm) => rescale(embedding, *norm)
                        .map(|v| {
                            Tensor::from_data(
                                TensorData::new(v, [1, embedding.len()]),
                                &self.device,
                            )
                        })
                        .unwrap_or(semantic),
                    None => semantic,
                };
                // A fresh stream per image: a trial drawn twice gives the same picture.
                let mut noise = SeededNoise::new(*seed);
                let sampled = pipeline
                    .sample(semantic, settings, &mut noise)
                    .map_err(|e| e.to_string())?;
                sampled.image * 2.0 - 1.0
            }
        };
        image.into_data().to_vec().map_err(|e| format!("{e:?}"))
    }

    fn run(self) {
        let mut skipped_seen = 0;
        loop {
            let trial = {
                let (lock, cv) = &*self.slot;
                let mut pending = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(t) = pending.take() {
                        cv.notify_all();
                        break t;
                    }
                    if self.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    pending = cv.wait(pending).unwrap_or_else(|p| p.into_inner());
                }
            };
            let values = match self.draw(&trial.tokens, &trial.embedding) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!("trial {}: the generator failed: {e}", trial.trial);
                    continue;
                }
            };
            let plane = self.size * self.size;
            let rgb: Vec<u8> = (0..plane)
                .flat_map(|p| {
                    let v = &values;
                    (0..3).map(move |c| {
                        (((v.get(c * plane + p).copied().unwrap_or(0.0) + 1.0) / 2.0)
                            .clamp(0.0, 1.0)
                            * 255.0)
                            .round() as u8
                    })
                })
                .collect();
            let skipped_now = self.skipped.load(Ordering::SeqCst);
            let record = Reconstruction {
                trial: trial.trial,
                stimulus: trial.stimulus,
                sample_ns: trial.sample_ns,
                decoded_ns: trial.decoded_ns,
                generated_ns: now_ns(),
                skipped_before: skipped_now - skipped_seen,
                size: self.size,
                rgb,
            };
            skipped_seen = skipped_now;
            if !(self.deliver)(record) {
                return;
            }
        }
    }
}

/// `embedding` scaled to `norm` (None for a zero vector, which has no direction to keep).
fn rescale(embedding: &[f32], norm: f32) -> Option<Vec<f32>> {
    let length = embedding
        .iter()
        .map(|v| f64::from(v * v))
        .sum::<f64>()
        .sqrt() as f32;
    (length > 0.0 && length.is_finite())
        .then(|| embedding.iter().map(|v| v * norm / length).collect())
}
