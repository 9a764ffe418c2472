//! Hugging Face CLIP weights into our modules: `config.json` + `model.safetensors` (CLIPModel,
//! CLIPVisionModel, CLIPVisionModelWithProjection, CLIPTextModelWithProjection), through
//! burn-store with key remapping. f16/bf16 files are cast to f32 as they load. A missing tensor
//! is an error naming it; tensors the module does not use (e.g. the other tower) are listed in
//! the load report.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::prelude::*;
use burn::store::{
    ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot,
};
use burn::tensor::DType;

use super::clip::{ClipVision, VisionConfig};
use super::clip_text::{ClipText, TextConfig};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Weights { path: PathBuf, message: String },
}

/// A loaded model, its config and what loading said.
pub struct Loaded<M, C> {
    pub model: M,
    pub config: C,
    pub report: String,
}

/// Casts every floating-point tensor (f16, bf16, f32; raw parameters included) to one dtype:
/// f32 when loading half-precision files, f16 when saving ours (`save.rs`).
#[derive(Clone)]
pub(crate) struct CastFloats(pub DType);

impl ModuleAdapter for CastFloats {
    fn adapt(&self, s: &TensorSnapshot) -> TensorSnapshot {
        if s.dtype == self.0 || !matches!(s.dtype, DType::F16 | DType::BF16 | DType::F32) {
            return s.clone();
        }
        let data = s.clone_data_fn();
        let to = self.0;
        TensorSnapshot::from_closure(
            Rc::new(move || Ok(data()?.convert_dtype(to))),
            to,
            s.shape.clone(),
            s.path_stack.clone().unwrap_or_default(),
            s.container_stack.clone().unwrap_or_default(),
            s.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// The detail layers our own encoders record in their `config.json`
/// (`brainmclip.detail_layers`), when there.
pub fn detail_layers_of(config: &serde_json::Value) -> Option<(usize, usize)> {
    let a = config.pointer("/brainmclip/detail_layers")?.as_array()?;
    Some((a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize))
}

/// `config.json`: the section for one tower (nested in CLIPModel, flat otherwise) and the
/// projection size.
fn read_config<C: serde::de::DeserializeOwned>(
    dir: &Path,
    section: &str,
) -> Result<(C, Option<usize>), LoadError> {
    let path = dir.join("config.json");
    let err = |message: String| LoadError::Config {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(format!("cannot read: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    let part = json.get(section).cloned().unwrap_or_else(|| json.clone());
    let config = serde_json::from_value(part).map_err(|e| err(format!("{section}: {e}")))?;
    let projection = json
        .get("projection_dim")
        .and_then(|p| p.as_u64())
        .map(|p| p as usize);
    Ok((config, projection))
}

/// Loads `dir/model.safetensors` into `model`. Missing tensors other than `optional` are errors.
fn load_weights<B: Backend, M: ModuleSnapshot<B>>(
    model: &mut M,
    dir: &Path,
    bare_prefix: &str,
    optional: &str,
) -> Result<(String, bool), LoadError> {
    let path = dir.join("model.safetensors");
    let mut store = SafetensorsStore::from_file(&path)
        // transformers 5 saves a bare tower (CLIPVisionModel, CLIPTextModel) without its prefix.
        .with_key_remapping(
            r"^(embeddings|encoder|pre_layrnorm|post_layernorm|final_layer_norm)\.",
            format!("{bare_prefix}.$1."),
        )
        .with_key_remapping(
            r"(layer_norm\d|pre_layrnorm|post_layernorm|final_layer_norm)\.weight$",
            "$1.gamma",
        )
        .with_key_remapping(
            r"(layer_norm\d|pre_layrnorm|post_layernorm|final_layer_norm)\.bias$",
            "$1.beta",
        )
        .with_from_adapter(CastFloats(DType::F32).chain(PyTorchToBurnAdapter))
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| LoadError::Weights {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let optional_missing = result
        .missing
        .iter()
        .any(|(name, _)| name.contains(optional));
    let missing: Vec<&String> = result
        .missing
        .iter()
        .map(|(name, _)| name)
        .filter(|n| !n.contains(optional))
        .collect();
    if !missing.is_empty() || !result.errors.is_empty() {
        return Err(LoadError::Weights {
            path,
            message: format!("missing tensors {missing:?}; errors {:?}", result.errors),
        });
    }
    Ok((result.to_string(), optional_missing))
}

/// The vision tower (and its projection, when the file has one).
pub fn load_clip_vision<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<Loaded<ClipVision<B>, VisionConfig>, LoadError> {
    let (config, projection) = read_config::<VisionConfig>(dir, "vision_config")?;
    let mut model = config.init::<B>(projection, device);
    let (report, no_projection) =
        load_weights::<B, _>(&mut model, dir, "vision_model", "visual_projection")?;
    if no_projection {
        model.visual_projection = None;
    }
    Ok(Loaded {
        model,
        config,
        report,
    })
}

/// The text tower (and its projection, when the file has one).
pub fn load_clip_text<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<Loaded<ClipText<B>, TextConfig>, LoadError> {
    let (config, projection) = read_config::<TextConfig>(dir, "text_config")?;
    let mut model = config.init::<B>(projection, device);
    let (report, no_projection) =
        load_weights::<B, _>(&mut model, dir, "text_model", "text_projection")?;
    if no_projection {
        model.text_projection = None;
    }
    Ok(Loaded {
        model,
        config,
        report,
    })
}
