//! The projector half of decoding: a trial's sample → the subject's projector → predicted CLIP
//! features, the feedback value (cosine with a target, or identification in a gallery) and the
//! gallery's best matches. Also the feedback targets (a text or an image through the encoder's
//! CLIP towers). It costs milliseconds, so every trial is decoded. It does not draw images
//! (`generate`) and owns no thread (`stage`).

use burn::DispatchDevice;

use crate::model::device::{live_device, ComputeDevice, LiveBackend};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::retrieval::Gallery;
use crate::clock::now_ns;
use crate::metrics::cosine;
use crate::model::calibration::{Calibration, CalibrationError, SampleSettings};
use crate::preprocess::trials::Sample;

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
    #[error("decode.device: {0}")]
    Device(#[from] crate::model::device::DeviceError),
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

pub struct Decoder {
    calibration: Calibration<LiveBackend>,
    compute: ComputeDevice,
    device: DispatchDevice,
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
        device: ComputeDevice,
    ) -> Result<Decoder, DecodeError> {
        let compute = device;
        let device = live_device(device);
        let calibration = Calibration::load(dir, &device)?;
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
        // One decode at the live shapes before the first volume (kernels compile and tune at
        // first use on a GPU).
        let p = &calibration.info.projector;
        let started = std::time::Instant::now();
        calibration.decode(
            &vec![0.0; p.detail_voxels],
            &vec![0.0; p.semantic_voxels],
            &device,
        );
        tracing::info!(
            "projector warmed up on {compute} in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(Decoder {
            calibration,
            compute,
            device,
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

    /// Where the projector runs.
    pub fn compute_device(&self) -> ComputeDevice {
        self.compute
    }

    pub fn calibration(&self) -> &Calibration<LiveBackend> {
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
            .decode(&s.detail, &s.semantic, &self.device)
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
pub fn image_target(
    encoder: &Path,
    path: &Path,
    device: ComputeDevice,
) -> Result<Vec<f32>, DecodeError> {
    let err = |p: &Path, m: String| DecodeError::File {
        path: p.to_owned(),
        message: m,
    };
    let conditioner = crate::model::conditioner::Conditioner::<LiveBackend>::load_on(
        encoder,
        live_device(device),
    )
    .map_err(|e| err(encoder, e.to_string()))?;
    super::retrieval::embed_image_files(&conditioner, &[path.to_owned()])
        .map_err(|e| err(path, e.to_string()))?
        .pop()
        .ok_or_else(|| err(path, "no embedding".into()))
}

/// The CLIP text embedding of `text` through `encoder`'s text tower and tokenizer.
pub fn text_target(
    encoder: &Path,
    text: &str,
    device: ComputeDevice,
) -> Result<Vec<f32>, DecodeError> {
    let err = |m: String| DecodeError::File {
        path: encoder.to_owned(),
        message: m,
    };
    let device = live_device(device);
    let loaded = crate::model::load::load_clip_text::<LiveBackend>(encoder, &device)
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
    let out = loaded.model.forward(&[ids], &device);
    let e = out
        .text_embeds
        .ok_or_else(|| err("the text tower has no projection".into()))?;
    e.into_data()
        .to_vec::<f32>()
        .map_err(|e| err(format!("{e:?}")))
}
