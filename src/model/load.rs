//! Hugging Face CLIP weights into our modules: `config.json` + `model.safetensors` (CLIPModel,
//! CLIPVisionModel, CLIPVisionModelWithProjection), with burn-store key remapping. A missing
//! tensor is an error naming it; extra tensors (e.g. the text tower) are listed in the report.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use super::clip::{ClipVision, VisionConfig};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Weights { path: PathBuf, message: String },
}

/// A loaded vision tower and what loading said.
pub struct LoadedVision<B: Backend> {
    pub model: ClipVision<B>,
    pub config: VisionConfig,
    pub report: String,
}

/// Loads the vision tower (and its projection, when the file has one) from a Hugging Face
/// folder holding `config.json` and `model.safetensors`.
pub fn load_clip_vision<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<LoadedVision<B>, LoadError> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| LoadError::Config {
        path: config_path.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| LoadError::Config {
        path: config_path.clone(),
        message: format!("not JSON: {e}"),
    })?;
    // CLIPModel nests the vision config; the vision-only classes are flat.
    let vision_json = json
        .get("vision_config")
        .cloned()
        .unwrap_or_else(|| json.clone());
    let config: VisionConfig =
        serde_json::from_value(vision_json).map_err(|e| LoadError::Config {
            path: config_path.clone(),
            message: format!("vision config: {e}"),
        })?;
    let projection_dim = json
        .get("projection_dim")
        .and_then(|p| p.as_u64())
        .map(|p| p as usize);

    let weights = dir.join("model.safetensors");
    let mut model = config.init::<B>(projection_dim, device);
    let mut store = SafetensorsStore::from_file(&weights)
        // transformers 5 saves a bare CLIPVisionModel without the `vision_model.` prefix.
        .with_key_remapping(
            r"^(embeddings|encoder|pre_layrnorm|post_layernorm)\.",
            "vision_model.$1.",
        )
        .with_key_remapping(
            r"(layer_norm\d|pre_layrnorm|post_layernorm)\.weight$",
            "$1.gamma",
        )
        .with_key_remapping(
            r"(layer_norm\d|pre_layrnorm|post_layernorm)\.bias$",
            "$1.beta",
        )
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| LoadError::Weights {
            path: weights.clone(),
            message: e.to_string(),
        })?;
    let projection_missing = result
        .missing
        .iter()
        .any(|(name, _)| name.contains("visual_projection"));
    let missing: Vec<&String> = result
        .missing
        .iter()
        .map(|(name, _)| name)
        .filter(|n| !n.contains("visual_projection"))
        .collect();
    if !missing.is_empty() || !result.errors.is_empty() {
        return Err(LoadError::Weights {
            path: weights,
            message: format!("missing tensors {missing:?}; errors {:?}", result.errors),
        });
    }
    if projection_missing {
        model.visual_projection = None;
    }
    Ok(LoadedVision {
        model,
        config,
        report: result.to_string(),
    })
}
