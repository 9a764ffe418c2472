//! The decode stage: trial samples → the subject's projector (every trial, at once; it costs
//! milliseconds) → the feedback value; and predicted features → the generator on a worker
//! thread that always takes the newest waiting trial, so image generation never delays the
//! feedback and a slow CPU skips (and counts) trials rather than falling ever further behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use serde::Serialize;

use crate::clock::now_ns;
use crate::config::DecodeConfig;
use crate::metrics::cosine;
use crate::model::calibration::{Calibration, CalibrationError, SampleSettings};
use crate::model::generator::schedule::{sample, SamplerSettings};
use crate::model::generator::{Condition, UNet};
use crate::preprocess::trials::Sample;
use crate::retrieval::Gallery;
use crate::train::generator::{load_generator, GeneratorInfo};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: this calibration's samples were made differently from this session's, so its decodings would be wrong ({}); calibrate again or set the session's [preprocess] to match", differences.join("; "))]
    Preprocess {
        path: PathBuf,
        differences: Vec<String>,
    },
    #[error("decode.generator {generator}: made for {generator_tokens} tokens of width {generator_width} and {generator_dim}-d embeddings, but the calibration predicts {tokens} x {width} and {dim}")]
    Mismatch {
        generator: PathBuf,
        generator_tokens: usize,
        generator_width: usize,
        generator_dim: usize,
        tokens: usize,
        width: usize,
        dim: usize,
    },
}

/// A gallery image retrieved for a trial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// Index into the gallery (its thumbnails).
    #[serde(skip)]
    pub index: usize,
    pub name: String,
    pub cosine: f32,
}

/// One decoded trial.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DecodedTrial {
    pub trial: u64,
    pub stimulus: Option<String>,
    /// The feedback value: the cosine of the decoded embedding with the target when one is
    /// set, otherwise the trial's identification score in the gallery (when it has one).
    pub feedback: Option<f64>,
    /// Cosine with the target, when one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_similarity: Option<f64>,
    /// The gallery's best matches, best first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retrieved: Vec<Match>,
    /// Fraction of the gallery's other images the true stimulus beats (0.5 = chance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identification: Option<f64>,
    pub sample_ns: u64,
    pub decoded_ns: u64,
    #[serde(skip)]
    pub embedding: Vec<f32>,
    #[serde(skip)]
    pub tokens: Vec<f32>,
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

pub struct Decoder {
    calibration: Calibration<Flex>,
    target: Option<Vec<f32>>,
    gallery: Option<Arc<Gallery>>,
    checked: bool,
}

/// How many gallery matches each trial reports.
pub const RETRIEVED: usize = 3;

impl Decoder {
    /// The calibration in `dir`, refused when its samples were made with other z-score or
    /// trial-window settings than `preprocess` (the session's).
    pub fn load(
        dir: &Path,
        preprocess: &crate::config::PreprocessConfig,
        target: Option<Vec<f32>>,
    ) -> Result<Decoder, DecodeError> {
        let calibration = Calibration::load(dir, &FlexDevice)?;
        match &calibration.info.preprocess {
            Some(calibrated) => {
                let differences = calibrated.differences(&SampleSettings::of(preprocess));
                if !differences.is_empty() {
                    return Err(DecodeError::Preprocess {
                        path: dir.join("projector.json"),
                        differences,
                    });
                }
            }
            None => tracing::warn!(
                "{}: does not record the preprocessing it was calibrated with; the session's \
                 z-score and trial-window settings must be the ones it was made with",
                dir.join("projector.json").display()
            ),
        }
        Ok(Decoder {
            calibration,
            target,
            gallery: None,
            checked: false,
        })
    }

    /// Ranks every decoded trial against `gallery`.
    pub fn with_gallery(mut self, gallery: Gallery) -> Decoder {
        self.gallery = Some(Arc::new(gallery));
        self
    }

    pub fn gallery(&self) -> Option<&Arc<Gallery>> {
        self.gallery.as_ref()
    }

    /// Replaces the feedback target (e.g. a new prompt typed in the window).
    pub fn set_target(&mut self, target: Option<Vec<f32>>) {
        self.target = target;
    }

    pub fn calibration(&self) -> &Calibration<Flex> {
        &self.calibration
    }

    /// Decodes one sample (its voxel counts are checked against the calibration once).
    pub fn decode(&mut self, s: &Sample, sample_ns: u64) -> Result<DecodedTrial, DecodeError> {
        if !self.checked {
            self.calibration
                .check_voxels(s.detail.len(), s.semantic.len())?;
            self.checked = true;
        }
        let out = self
            .calibration
            .decode(&s.detail, &s.semantic, &FlexDevice)
            .pop()
            .unwrap_or_else(|| crate::model::calibration::Decoded {
                detail_tokens: Vec::new(),
                embedding: Vec::new(),
            });
        let target_similarity = self.target.as_ref().map(|t| cosine(&out.embedding, t));
        let ranking = self
            .gallery
            .as_ref()
            .map(|g| g.rank(&out.embedding, s.trial.stimulus.as_deref(), RETRIEVED));
        let identification = ranking.as_ref().and_then(|r| r.identification);
        let top = ranking.map(|r| r.top).unwrap_or_default();
        Ok(DecodedTrial {
            trial: s.trial.id,
            stimulus: s.trial.stimulus.clone(),
            feedback: target_similarity.or(identification),
            target_similarity,
            retrieved: top
                .iter()
                .filter_map(|&(index, cosine)| {
                    let name = self.gallery.as_ref()?.names.get(index)?.clone();
                    Some(Match {
                        index,
                        name,
                        cosine,
                    })
                })
                .collect(),
            identification,
            sample_ns,
            decoded_ns: now_ns(),
            embedding: out.embedding,
            tokens: out.detail_tokens,
        })
    }
}

/// The CLIP image embedding of the image file `path` through `encoder`'s vision tower.
pub fn image_target(encoder: &Path, path: &Path) -> Result<Vec<f32>, DecodeError> {
    let err = |p: &Path, m: String| DecodeError::File {
        path: p.to_owned(),
        message: m,
    };
    let conditioner = crate::train::generator::Conditioner::load(encoder)
        .map_err(|e| err(encoder, e.to_string()))?;
    crate::retrieval::embed_image_files(&conditioner, &[path.to_owned()])
        .map_err(|e| err(path, e.to_string()))?
        .pop()
        .ok_or_else(|| err(path, "no embedding".into()))
}

/// The CLIP text embedding of `text` through `encoder`'s text tower and tokenizer.
pub fn text_target(encoder: &Path, text: &str) -> Result<Vec<f32>, DecodeError> {
    let err = |m: String| DecodeError::File {
        path: encoder.to_owned(),
        message: m,
    };
    let loaded = crate::model::load::load_clip_text::<Flex>(encoder, &FlexDevice)
        .map_err(|e| err(e.to_string()))?;
    let c = &loaded.config;
    let tokenizer = crate::model::tokenizer::ClipTokenizer::from_file(
        &encoder.join("tokenizer.json"),
        c.max_position_embeddings,
        c.eos_token_id as u32,
        c.eos_token_id as u32,
    )
    .map_err(|e| err(e.to_string()))?;
    let ids = tokenizer.encode(text).map_err(|e| err(e.to_string()))?;
    let out = loaded.model.forward(&[ids], &FlexDevice);
    let e = out
        .text_embeds
        .ok_or_else(|| err("the text tower has no projection".into()))?;
    e.into_data()
        .to_vec::<f32>()
        .map_err(|e| err(format!("{e:?}")))
}

type Slot = Arc<(Mutex<Option<DecodedTrial>>, Condvar)>;

/// The generator worker: `submit` never blocks; the worker draws the newest waiting trial.
pub struct Generation {
    slot: Slot,
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicUsize>,
    results: Receiver<Reconstruction>,
    thread: Option<JoinHandle<()>>,
}

impl Generation {
    pub fn start(
        dir: &Path,
        config: &DecodeConfig,
        tokens: usize,
        width: usize,
        dim: usize,
    ) -> Result<Generation, DecodeError> {
        let (info, model): (GeneratorInfo, UNet<Flex>) =
            load_generator(dir, &FlexDevice).map_err(|e| DecodeError::File {
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
        let (tx, rx) = unbounded();
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
            tx,
            model,
            size: g.image_size,
            settings,
            tokens,
            width,
        };
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
            results: rx,
            thread: Some(thread),
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

    pub fn results(&self) -> &Receiver<Reconstruction> {
        &self.results
    }

    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::SeqCst)
    }

    /// True while a trial waits for the worker.
    pub fn waiting(&self) -> bool {
        self.slot.0.lock().is_ok_and(|p| p.is_some())
    }

    /// Waits until the worker has drawn every trial offered, then stops it.
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
        self.results.try_iter().collect()
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
    tx: Sender<Reconstruction>,
    model: UNet<Flex>,
    size: usize,
    settings: SamplerSettings,
    tokens: usize,
    width: usize,
}

impl Worker {
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
            let device = FlexDevice;
            let cond = Condition {
                tokens: Tensor::<Flex, 3>::from_data(
                    TensorData::new(trial.tokens.clone(), [1, self.tokens, self.width]),
                    &device,
                ),
                semantic: Tensor::<Flex, 2>::from_data(
                    TensorData::new(trial.embedding.clone(), [1, trial.embedding.len()]),
                    &device,
                ),
            };
            let image = sample(&self.model, &cond, self.size, self.settings, &device);
            let values: Vec<f32> = image.into_data().to_vec().unwrap_or_default();
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
            if self.tx.send(record).is_err() {
                return;
            }
        }
    }
}
