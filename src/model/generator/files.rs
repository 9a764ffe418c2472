//! A trained generator on disk: `generator.json` (its configuration, the encoder it is
//! conditioned on, and how it was trained) beside `generator.mpk` (f16 weights). Loading is what
//! the live decoder needs; training writes the same files. It trains nothing.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::record::{HalfPrecisionSettings, NamedMpkFileRecorder};
use serde::{Deserialize, Serialize};

use super::{GeneratorConfig, UNet};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct GeneratorFileError {
    pub path: PathBuf,
    pub message: String,
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> GeneratorFileError {
    GeneratorFileError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// `generator.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorInfo {
    pub generator: GeneratorConfig,
    /// The Hugging Face CLIP folder whose features condition it.
    pub encoder: String,
    pub detail_layers: (usize, usize),
    /// The training settings that made it (provenance; not needed to draw).
    #[serde(default)]
    pub train: serde_json::Value,
    /// The generator whose weights training started from (fine-tuning), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// The image folder it was trained on (none: the simulator's images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageSource>,
}

/// Where `train-generator --images` took its images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSource {
    pub folder: String,
    pub images: usize,
    pub heldout: usize,
    pub heldout_fraction: f64,
}

pub fn save_generator<B: Backend>(
    dir: &Path,
    info: &GeneratorInfo,
    model: &UNet<B>,
) -> Result<(), GeneratorFileError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let json = dir.join("generator.json");
    let text = serde_json::to_string_pretty(info).map_err(|e| file_err(&json, e))?;
    crate::atomic::write_atomic(&json, text.as_bytes()).map_err(|e| file_err(&json, e))?;
    let _ = std::fs::remove_file(dir.join("generator.mpk"));
    let half = NamedMpkFileRecorder::<HalfPrecisionSettings>::new();
    model
        .clone()
        .save_file(dir.join("generator"), &half)
        .map_err(|e| file_err(&dir.join("generator.mpk"), e))
}

/// A trained generator and its provenance.
pub fn load_generator<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(GeneratorInfo, UNet<B>), GeneratorFileError> {
    let json = dir.join("generator.json");
    let text = std::fs::read_to_string(&json).map_err(|e| file_err(&json, e))?;
    let info: GeneratorInfo = serde_json::from_str(&text)
        .map_err(|e| file_err(&json, format!("not a generator config: {e}")))?;
    let half = NamedMpkFileRecorder::<HalfPrecisionSettings>::new();
    let model = info
        .generator
        .init::<B>(device)
        .load_file(dir.join("generator"), &half, device)
        .map_err(|e| file_err(&dir.join("generator.mpk"), e))?;
    Ok((info, model))
}
