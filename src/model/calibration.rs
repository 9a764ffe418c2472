//! A subject's calibration on disk and in use: `projector.json` (the projector config and what
//! it was made from), `projector.mpk` (weights) and `normalisation.safetensors` (the voxel and
//! target statistics the live path applies). Loading checks the voxel counts against the masks
//! in use, so a calibration can never be applied to other voxels.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::projector::{Projector, ProjectorConfig};

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: this calibration expects {expected_detail} detail and {expected_semantic} semantic voxels, but the masks in use give {detail} and {semantic}: calibrate again with these masks, or use the masks it was made with")]
    VoxelMismatch {
        path: PathBuf,
        expected_detail: usize,
        expected_semantic: usize,
        detail: usize,
        semantic: usize,
    },
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> CalibrationError {
    CalibrationError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// `projector.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    pub projector: ProjectorConfig,
    /// "multi" or "final-only".
    pub targets: String,
    pub detail_layers: (usize, usize),
    pub encoder: String,
    pub subject: String,
    /// How the calibration's samples were made; live samples must be made the same way.
    /// Absent in calibrations made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<SampleSettings>,
}

/// The preprocessing settings that shape a trial sample's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSettings {
    pub zscore: crate::config::ZScoreMode,
    pub zscore_window: usize,
    pub zscore_half_life: f64,
    pub detrend: bool,
    pub trial_window_start_s: f64,
    pub trial_window_end_s: f64,
}

impl SampleSettings {
    pub fn of(p: &crate::config::PreprocessConfig) -> SampleSettings {
        SampleSettings {
            zscore: p.zscore,
            zscore_window: p.zscore_window,
            zscore_half_life: p.zscore_half_life,
            detrend: p.detrend,
            trial_window_start_s: p.trial_window_start_s,
            trial_window_end_s: p.trial_window_end_s,
        }
    }

    /// Each setting where `live` differs from these (the calibration's), as
    /// "preprocess.KEY: calibrated with A, this session has B", in key order.
    pub fn differences(&self, live: &SampleSettings) -> Vec<String> {
        let fields = |s: &SampleSettings| match serde_json::to_value(s) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let show = |v: &serde_json::Value| match v {
            serde_json::Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| f.to_string()),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let session = fields(live);
        fields(self)
            .iter()
            .filter(|(key, calibrated)| session.get(*key) != Some(*calibrated))
            .map(|(key, calibrated)| {
                let now = session.get(key).map_or("nothing".to_string(), show);
                format!(
                    "preprocess.{key}: calibrated with {}, this session has {now}",
                    show(calibrated)
                )
            })
            .collect()
    }
}

/// Per-feature mean and standard deviation of inputs and targets (training trials).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalisation {
    pub detail_mean: Vec<f32>,
    pub detail_std: Vec<f32>,
    pub semantic_mean: Vec<f32>,
    pub semantic_std: Vec<f32>,
    /// Per channel of the detail tokens.
    pub token_mean: Vec<f32>,
    pub token_std: Vec<f32>,
    pub embedding_mean: Vec<f32>,
    pub embedding_std: Vec<f32>,
}

/// Mean and SD of each of `width` columns over `rows` (SD floored so it can divide).
pub fn column_stats(values: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (values.len() / width.max(1)).max(1) as f64;
    let mut sum = vec![0.0f64; width];
    let mut sq = vec![0.0f64; width];
    for row in values.chunks_exact(width) {
        for (c, &v) in row.iter().enumerate() {
            sum[c] += v as f64;
            sq[c] += (v as f64).powi(2);
        }
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std = sq
        .iter()
        .zip(&sum)
        .map(|(q, s)| ((q / n - (s / n).powi(2)).max(0.0).sqrt().max(1e-6)) as f32)
        .collect();
    (mean, std)
}

/// `(v - mean) / std` column-wise, in place.
pub fn standardise(values: &mut [f32], mean: &[f32], std: &[f32]) {
    for row in values.chunks_exact_mut(mean.len()) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = (*v - m) / s;
        }
    }
}

/// `v * std + mean` column-wise, in place.
pub fn unstandardise(values: &mut [f32], mean: &[f32], std: &[f32]) {
    for row in values.chunks_exact_mut(mean.len()) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = *v * s + m;
        }
    }
}

const NORM_NAMES: [&str; 8] = [
    "detail_mean",
    "detail_std",
    "semantic_mean",
    "semantic_std",
    "token_mean",
    "token_std",
    "embedding_mean",
    "embedding_std",
];

impl Normalisation {
    fn fields(&self) -> [&Vec<f32>; 8] {
        [
            &self.detail_mean,
            &self.detail_std,
            &self.semantic_mean,
            &self.semantic_std,
            &self.token_mean,
            &self.token_std,
            &self.embedding_mean,
            &self.embedding_std,
        ]
    }

    pub fn save(&self, path: &Path) -> Result<(), CalibrationError> {
        let bytes: Vec<Vec<u8>> = self
            .fields()
            .iter()
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views = NORM_NAMES
            .iter()
            .zip(&bytes)
            .zip(self.fields())
            .map(|((name, b), v)| TensorView::new(Dtype::F32, vec![v.len()], b).map(|t| (*name, t)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(path, e))?;
        let data = safetensors::serialize(views, None::<HashMap<String, String>>)
            .map_err(|e| file_err(path, e))?;
        crate::atomic::write_atomic(path, &data).map_err(|e| file_err(path, e))
    }

    pub fn load(path: &Path) -> Result<Normalisation, CalibrationError> {
        let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| file_err(path, e))?;
        let mut out: Vec<Vec<f32>> = Vec::new();
        for name in NORM_NAMES {
            let view = st
                .tensor(name)
                .map_err(|e| file_err(path, format!("{name}: {e}")))?;
            if view.dtype() != Dtype::F32 {
                return Err(file_err(path, format!("{name}: expected f32")));
            }
            out.push(
                view.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            );
        }
        let mut it = out.into_iter();
        let mut next = || it.next().unwrap_or_default();
        Ok(Normalisation {
            detail_mean: next(),
            detail_std: next(),
            semantic_mean: next(),
            semantic_std: next(),
            token_mean: next(),
            token_std: next(),
            embedding_mean: next(),
            embedding_std: next(),
        })
    }
}

/// A loaded calibration, ready to decode samples.
pub struct Calibration<B: Backend> {
    pub info: CalibrationInfo,
    pub norm: Normalisation,
    pub projector: Projector<B>,
    pub dir: PathBuf,
}

/// A decoded sample in CLIP units (normalisation undone).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// [tokens * width], row-major.
    pub detail_tokens: Vec<f32>,
    pub embedding: Vec<f32>,
}

impl<B: Backend> Calibration<B> {
    pub fn save(
        dir: &Path,
        info: &CalibrationInfo,
        norm: &Normalisation,
        projector: &Projector<B>,
    ) -> Result<(), CalibrationError> {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let json = dir.join("projector.json");
        let text = serde_json::to_string_pretty(info).map_err(|e| file_err(&json, e))?;
        crate::atomic::write_atomic(&json, text.as_bytes()).map_err(|e| file_err(&json, e))?;
        norm.save(&dir.join("normalisation.safetensors"))?;
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        projector
            .clone()
            .save_file(dir.join("projector"), &rec)
            .map_err(|e| file_err(&dir.join("projector.mpk"), e))
    }

    pub fn load(dir: &Path, device: &B::Device) -> Result<Calibration<B>, CalibrationError> {
        let json = dir.join("projector.json");
        let text = std::fs::read_to_string(&json).map_err(|e| file_err(&json, e))?;
        let info: CalibrationInfo = serde_json::from_str(&text)
            .map_err(|e| file_err(&json, format!("not a calibration: {e}")))?;
        let norm = Normalisation::load(&dir.join("normalisation.safetensors"))?;
        let p = &info.projector;
        let expect = [
            p.detail_voxels,
            p.detail_voxels,
            p.semantic_voxels,
            p.semantic_voxels,
            p.detail_width,
            p.detail_width,
            p.semantic_dim,
            p.semantic_dim,
        ];
        for ((name, v), n) in NORM_NAMES.iter().zip(norm.fields()).zip(expect) {
            if v.len() != n {
                return Err(file_err(
                    &dir.join("normalisation.safetensors"),
                    format!("{name} has {} values, projector.json says {n}", v.len()),
                ));
            }
        }
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let projector = p
            .init::<B>(device)
            .load_file(dir.join("projector"), &rec, device)
            .map_err(|e| file_err(&dir.join("projector.mpk"), e))?;
        Ok(Calibration {
            info,
            norm,
            projector,
            dir: dir.to_owned(),
        })
    }

    /// Refuses masks with other voxel counts than the calibration's.
    pub fn check_voxels(&self, detail: usize, semantic: usize) -> Result<(), CalibrationError> {
        let p = &self.info.projector;
        if p.detail_voxels != detail || p.semantic_voxels != semantic {
            return Err(CalibrationError::VoxelMismatch {
                path: self.dir.join("projector.json"),
                expected_detail: p.detail_voxels,
                expected_semantic: p.semantic_voxels,
                detail,
                semantic,
            });
        }
        Ok(())
    }

    /// Decodes samples (rows of raw trial responses) into CLIP units.
    pub fn decode(&self, detail: &[f32], semantic: &[f32], device: &B::Device) -> Vec<Decoded> {
        let p = &self.info.projector;
        let n = detail.len() / p.detail_voxels.max(1);
        let (mut d, mut s) = (detail.to_vec(), semantic.to_vec());
        standardise(&mut d, &self.norm.detail_mean, &self.norm.detail_std);
        standardise(&mut s, &self.norm.semantic_mean, &self.norm.semantic_std);
        let out = self.projector.forward(
            Tensor::from_data(TensorData::new(d, [n, p.detail_voxels]), device),
            Tensor::from_data(TensorData::new(s, [n, p.semantic_voxels]), device),
        );
        let mut tokens: Vec<f32> = out.detail_tokens.into_data().to_vec().unwrap_or_default();
        let mut embedding: Vec<f32> = out.semantic.into_data().to_vec().unwrap_or_default();
        unstandardise(&mut tokens, &self.norm.token_mean, &self.norm.token_std);
        unstandardise(
            &mut embedding,
            &self.norm.embedding_mean,
            &self.norm.embedding_std,
        );
        let tc = p.detail_tokens * p.detail_width;
        (0..n)
            .map(|i| Decoded {
                detail_tokens: tokens
                    .get(i * tc..(i + 1) * tc)
                    .map(<[f32]>::to_vec)
                    .unwrap_or_default(),
                embedding: embedding
                    .get(i * p.semantic_dim..(i + 1) * p.semantic_dim)
                    .map(<[f32]>::to_vec)
                    .unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PreprocessConfig;

    #[test]
    fn sample_settings_name_each_difference() {
        let calibrated = SampleSettings::of(&PreprocessConfig::default());
        assert!(calibrated
            .differences(&SampleSettings::of(&PreprocessConfig::default()))
            .is_empty());
        let live = SampleSettings::of(&PreprocessConfig {
            detrend: true,
            trial_window_end_s: 9.0,
            ..PreprocessConfig::default()
        });
        assert_eq!(
            calibrated.differences(&live),
            vec![
                "preprocess.detrend: calibrated with false, this session has true".to_string(),
                "preprocess.trial_window_end_s: calibrated with 7.5, this session has 9"
                    .to_string(),
            ]
        );
    }
}
