//! Our own trained CLIP written as a Hugging Face `CLIPModel` folder (`config.json`,
//! `model.safetensors`, f16 by choice), so every tool that loads real CLIP weights — `load.rs`,
//! `features`, transformers itself — loads ours the same way.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::DType;

use super::clip::ClipVision;
use super::clip_text::ClipText;
use super::load::CastFloats;

#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot write: {message}")]
pub struct SaveError {
    pub path: PathBuf,
    pub message: String,
}

/// Both towers and the learned temperature; field names become the top-level names after the
/// `vision.` / `text.` prefixes are stripped on save.
#[derive(Module, Debug)]
pub struct Clip<B: Backend> {
    pub vision: ClipVision<B>,
    pub text: ClipText<B>,
    /// `log(1 / temperature)`, as CLIP's `logit_scale`.
    pub logit_scale: Param<Tensor<B, 1>>,
}

/// Writes `dir/model.safetensors` (Hugging Face names, f16 when `half`) and `dir/config.json`.
pub fn save_clip<B: Backend>(
    model: &Clip<B>,
    config: &serde_json::Value,
    dir: &Path,
    half: bool,
) -> Result<(), SaveError> {
    let err = |path: &Path, message: String| SaveError {
        path: path.to_owned(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let weights = dir.join("model.safetensors");
    let partial = dir.join("model.safetensors.partial");
    let dtype = if half { DType::F16 } else { DType::F32 };
    let mut store = SafetensorsStore::from_file(&partial)
        .with_key_remapping(r"^vision\.", "")
        .with_key_remapping(r"^text\.", "")
        .with_to_adapter(BurnToPyTorchAdapter.chain(CastFloats(dtype)))
        .metadata("format", "pt")
        .overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| err(&partial, e.to_string()))?;
    std::fs::rename(&partial, &weights).map_err(|e| err(&weights, e.to_string()))?;
    let config_path = dir.join("config.json");
    let text =
        serde_json::to_string_pretty(config).map_err(|e| err(&config_path, e.to_string()))?;
    crate::atomic::write_atomic(&config_path, text.as_bytes())
        .map_err(|e| err(&config_path, e.to_string()))?;
    Ok(())
}
