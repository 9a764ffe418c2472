//! The generator half of decoding: predicted features → an image, on a worker thread that always
//! takes the newest waiting trial, so image generation never delays the feedback and a slow
//! device skips (and counts) trials rather than falling ever further behind. It does not decode
//! samples (`decoder`).

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
        tokens: usize,
        width: usize,
        dim: usize,
    ) -> Result<Generation, DecodeError> {
        let (tx, rx) = unbounded();
        let mut generation =
            Generation::start_into(dir, config, tokens, width, dim, move |r| tx.send(r).is_ok())?;
        generation.collected = Some(rx);
        Ok(generation)
    }

    /// As `start`, each drawn image handed to `deliver` on the worker thread (which stops when
    /// `deliver` returns false).
    pub fn start_into(
        dir: &Path,
        config: &DecodeConfig,
        tokens: usize,
        width: usize,
        dim: usize,
        deliver: impl Fn(Reconstruction) -> bool + Send + 'static,
    ) -> Result<Generation, DecodeError> {
        let device = live_device(select(config.device)?);
        let (info, model): (GeneratorInfo, UNet<LiveBackend>) = load_generator(dir, &device)
            .map_err(|e| DecodeError::File {
                path: dir.to_owned(),
                message: e.to_string(),
            })?;
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
        let slot: Slot = Arc::new((Mutex::new(None), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let skipped = Arc::new(AtomicUsize::new(0));
        let settings = SamplerSettings {
            steps: config.steps.max(1),
            guidance: config.guidance,
            seed: config.seed,
            start: 1.0,
            time_power: config.time_power,
        };
        let worker = Worker {
            slot: slot.clone(),
            stop: stop.clone(),
            skipped: skipped.clone(),
            deliver: Box::new(deliver),
            model,
            device,
            size: g.image_size,
            settings,
            tokens,
            width,
        };
        // Kernels compile and autotune at first use: pay that now, at the live shapes, not on
        // the first trial.
        let started = std::time::Instant::now();
        worker.draw(&vec![0.0; tokens * width], &vec![0.0; dim]);
        let warmup_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            "generator warmed up on {:?} in {warmup_ms:.0} ms ({} steps, guidance {})",
            worker.device,
            settings.steps,
            settings.guidance
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
    model: UNet<LiveBackend>,
    device: DispatchDevice,
    size: usize,
    settings: SamplerSettings,
    tokens: usize,
    width: usize,
}

impl Worker {
    /// One image for these features: CHW values in -1..1.
    fn draw(&self, tokens: &[f32], embedding: &[f32]) -> Vec<f32> {
        let cond = Condition {
            tokens: Tensor::<LiveBackend, 3>::from_data(
                TensorData::new(tokens.to_vec(), [1, self.tokens, self.width]),
                &self.device,
            ),
            semantic: Tensor::<LiveBackend, 2>::from_data(
                TensorData::new(embedding.to_vec(), [1, embedding.len()]),
                &self.device,
            ),
        };
        let image = sample(&self.model, &cond, self.size, self.settings, &self.device);
        image.into_data().to_vec().unwrap_or_default()
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
            let values = self.draw(&trial.tokens, &trial.embedding);
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
