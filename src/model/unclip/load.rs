//! A diffusers unCLIP pipeline folder into our modules: `model_index.json`, then per component
//! `config.json` (schedulers: `scheduler_config.json`) and `diffusion_pytorch_model.safetensors`
//! (or `model.safetensors`, or their `.fp16` variants), f16/bf16 cast to f32 as they load. Every
//! tensor the module expects must be in the file (missing ones are named, with diffusers'
//! names); tensors the module does not use are listed in the report. The text encoder is read
//! with our CLIP loader and run once on the empty prompt; the folder's image encoder and
//! feature extractor are not read.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::DType;

use super::config::{check_model_index, read_json, ConfigError};
use super::decoder::{Decoder, DecoderConfig};
use super::pipeline::{EmptyPrompt, PipelineError, Unclip};
use super::scheduler::{SchedulerConfig, UnclipScheduler};
use super::super_res::{SuperRes, SuperResConfig};
use super::text_proj::{TextProj, TextProjConfig};
use crate::model::clip_text::TextConfig;
use crate::model::load::{load_clip_text, CastFloats, Loaded};
use crate::model::tokenizer::{ClipTokenizer, TokenizerError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{dir}: no weights: expected one of {expected}")]
    NoWeights { dir: PathBuf, expected: String },
    #[error("{path}: sharded weights are not supported; save the component as one file")]
    Sharded { path: PathBuf },
    #[error("{path}: missing tensors: {}", names.join(", "))]
    Missing { path: PathBuf, names: Vec<String> },
    #[error("{path}: {message}")]
    Weights { path: PathBuf, message: String },
    #[error(transparent)]
    TextEncoder(#[from] crate::model::load::LoadError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("{dir}: {message}")]
    Tokens { dir: PathBuf, message: String },
    #[error("{dir}: {source}")]
    Prompt { dir: PathBuf, source: PipelineError },
    #[error("{path}: sample_size is not set; the pipeline needs it for the image side")]
    NoSampleSize { path: PathBuf },
}

/// The pipeline and what loading each component said.
pub struct LoadedUnclip<B: Backend> {
    pub pipeline: Unclip<B>,
    pub report: String,
}

const WEIGHT_FILES: [&str; 4] = [
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
];

/// Our module paths back to diffusers' names: burn's norms call weight and bias gamma and beta.
fn diffusers_name(path: &str) -> String {
    if let Some(p) = path.strip_suffix(".gamma") {
        format!("{p}.weight")
    } else if let Some(p) = path.strip_suffix(".beta") {
        format!("{p}.bias")
    } else {
        path.to_string()
    }
}

fn weight_file(dir: &Path) -> Result<PathBuf, LoadError> {
    if let Some(path) = WEIGHT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    {
        return Ok(path);
    }
    for index in [
        "diffusion_pytorch_model.safetensors.index.json",
        "model.safetensors.index.json",
    ] {
        let path = dir.join(index);
        if path.is_file() {
            return Err(LoadError::Sharded { path });
        }
    }
    Err(LoadError::NoWeights {
        dir: dir.to_owned(),
        expected: WEIGHT_FILES.join(", "),
    })
}

/// Loads a component's safetensors into `model`; returns the report line.
fn load_weights<B: Backend, M: ModuleSnapshot<B>>(
    model: &mut M,
    dir: &Path,
) -> Result<String, LoadError> {
    let path = weight_file(dir)?;
    let norms = "(norm1|norm2|group_norm|conv_norm_out|text_encoder_hidden_states_norm)";
    let mut store = SafetensorsStore::from_file(&path)
        .with_key_remapping(format!(r"{norms}\.weight$"), "$1.gamma")
        .with_key_remapping(format!(r"{norms}\.bias$"), "$1.beta")
        .with_from_adapter(CastFloats(DType::F32).chain(PyTorchToBurnAdapter))
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| LoadError::Weights {
            path: path.clone(),
            message: e.to_string(),
        })?;
    if !result.missing.is_empty() {
        let mut names: Vec<String> = result
            .missing
            .iter()
            .map(|(name, _)| diffusers_name(name))
            .collect();
        names.sort();
        return Err(LoadError::Missing { path, names });
    }
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(LoadError::Weights {
            path,
            message: errors.join("; "),
        });
    }
    let mut unused = result.unused.clone();
    unused.sort();
    Ok(format!(
        "{}: {} tensors loaded; unused: {}",
        path.display(),
        result.applied.len(),
        if unused.is_empty() {
            "none".to_string()
        } else {
            unused.join(", ")
        }
    ))
}

/// The decoder (`UNet2DConditionModel`) in `dir`.
pub fn load_decoder<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<Loaded<Decoder<B>, DecoderConfig>, LoadError> {
    let path = dir.join("config.json");
    let config = DecoderConfig::from_file(&path)?;
    let plan = config.plan(&path)?;
    let mut model = config.init::<B>(&plan, device);
    let report = load_weights::<B, _>(&mut model, dir)?;
    Ok(Loaded {
        model,
        config,
        report,
    })
}

/// A super-resolution UNet (`UNet2DModel`) in `dir`.
pub fn load_super_res<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<Loaded<SuperRes<B>, SuperResConfig>, LoadError> {
    let config = SuperResConfig::from_file(&dir.join("config.json"))?;
    let mut model = config.init::<B>(device);
    let report = load_weights::<B, _>(&mut model, dir)?;
    Ok(Loaded {
        model,
        config,
        report,
    })
}

/// The text projection (`UnCLIPTextProjModel`) in `dir`.
pub fn load_text_proj<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<Loaded<TextProj<B>, TextProjConfig>, LoadError> {
    let config = TextProjConfig::from_file(&dir.join("config.json"))?;
    let mut model = config.init::<B>(device);
    let report = load_weights::<B, _>(&mut model, dir)?;
    Ok(Loaded {
        model,
        config,
        report,
    })
}

/// A scheduler from `dir/scheduler_config.json`.
pub fn load_scheduler(dir: &Path) -> Result<UnclipScheduler, LoadError> {
    let config = SchedulerConfig::from_file(&dir.join("scheduler_config.json"))?;
    Ok(UnclipScheduler::new(config))
}

/// A special token's text in `tokenizer_config.json` or `special_tokens_map.json` (a string,
/// or an AddedToken object with `content`).
fn special_token(configs: &[serde_json::Value], key: &str) -> Option<String> {
    configs.iter().find_map(|c| {
        let v = c.get(key)?;
        v.as_str()
            .or_else(|| v.get("content").and_then(|c| c.as_str()))
            .map(str::to_string)
    })
}

/// The empty prompt as the pipeline tokenises it: start, end, padding to `model_max_length`,
/// and its attention mask. Uses `tokenizer.json` when the folder has one; otherwise the ids of
/// the special tokens from `vocab.json` (all an empty prompt needs).
pub fn empty_prompt_tokens(
    dir: &Path,
    text: &TextConfig,
) -> Result<(Vec<u32>, Vec<bool>), LoadError> {
    let err = |message: String| LoadError::Tokens {
        dir: dir.to_owned(),
        message,
    };
    let mut configs = vec![read_json::<serde_json::Value>(
        &dir.join("tokenizer_config.json"),
        "tokenizer",
    )?];
    let map = dir.join("special_tokens_map.json");
    if map.is_file() {
        configs.push(read_json(&map, "special tokens")?);
    }
    let bos = special_token(&configs, "bos_token").unwrap_or("<|startoftext|>".into());
    let eos = special_token(&configs, "eos_token").unwrap_or("<|endoftext|>".into());
    // CLIPTokenizer pads with end-of-text unless told otherwise.
    let pad = special_token(&configs, "pad_token").unwrap_or_else(|| eos.clone());
    // transformers writes a huge placeholder when the length is unset (diffusers would then fail
    // on padding): use the tower's context instead.
    let context = configs[0]
        .get("model_max_length")
        .and_then(|v| v.as_f64())
        .filter(|&l| l >= 2.0 && l <= text.max_position_embeddings as f64)
        .map_or(text.max_position_embeddings, |l| l as usize);
    if context < 2 {
        return Err(err(format!(
            "a context of {context} tokens cannot hold an empty prompt"
        )));
    }
    let json = dir.join("tokenizer.json");
    let ids = if json.is_file() {
        let tokenizer =
            tokenizers::Tokenizer::from_file(&json).map_err(|e| TokenizerError::Load {
                path: json.clone(),
                message: e.to_string(),
            })?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| err(format!("{t:?} is not in tokenizer.json")))
        };
        let (b, e, p) = (id(&bos)?, id(&eos)?, id(&pad)?);
        let ids = ClipTokenizer::from_file(&json, context, e, p)?.encode("")?;
        if ids[..2] != [b, e] {
            return Err(err(format!(
                "the empty prompt tokenises to {:?}, not start {b} and end {e}",
                &ids[..2]
            )));
        }
        ids
    } else {
        let vocab: std::collections::HashMap<String, u32> =
            read_json(&dir.join("vocab.json"), "vocab")?;
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| err(format!("{t:?} is not in vocab.json")))
        };
        let mut ids = vec![id(&bos)?, id(&eos)?];
        ids.resize(context, id(&pad)?);
        ids
    };
    let mask = (0..context).map(|i| i < 2).collect();
    Ok((ids, mask))
}

/// The text encoder in `dir/text_encoder` run on the empty prompt from `dir/tokenizer`.
pub fn load_empty_prompt<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(EmptyPrompt<B>, String), LoadError> {
    let loaded = load_clip_text::<B>(&dir.join("text_encoder"), device)?;
    let (ids, mask) = empty_prompt_tokens(&dir.join("tokenizer"), &loaded.config)?;
    let mut model = loaded.model;
    // transformers pools at the highest id when a config still has the old eos_token_id 2.
    if loaded.config.eos_token_id == 2 {
        model.eos_token_id = ids.iter().copied().max().unwrap_or_default() as usize;
    }
    let prompt =
        EmptyPrompt::encode(&model, ids, mask, device).map_err(|source| LoadError::Prompt {
            dir: dir.join("text_encoder"),
            source,
        })?;
    Ok((prompt, loaded.report))
}

/// The whole pipeline in a diffusers folder.
pub fn load_unclip<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<LoadedUnclip<B>, LoadError> {
    check_model_index(&dir.join("model_index.json"))?;
    let text_proj = load_text_proj::<B>(&dir.join("text_proj"), device)?;
    let decoder = load_decoder::<B>(&dir.join("decoder"), device)?;
    let first = load_super_res::<B>(&dir.join("super_res_first"), device)?;
    let last = load_super_res::<B>(&dir.join("super_res_last"), device)?;
    let decoder_size = decoder
        .config
        .sample_size
        .ok_or_else(|| LoadError::NoSampleSize {
            path: dir.join("decoder/config.json"),
        })?;
    let super_res_size = first
        .config
        .sample_size
        .ok_or_else(|| LoadError::NoSampleSize {
            path: dir.join("super_res_first/config.json"),
        })?;
    let (empty_prompt, text_report) = load_empty_prompt::<B>(dir, device)?;
    let report = [
        &text_proj.report,
        &decoder.report,
        &first.report,
        &last.report,
        &text_report,
    ]
    .map(|s| s.as_str())
    .join("\n");
    Ok(LoadedUnclip {
        pipeline: Unclip {
            embedding_dim: text_proj.config.clip_embeddings_dim,
            text_proj: text_proj.model,
            decoder: decoder.model,
            super_res_first: first.model,
            super_res_last: last.model,
            decoder_scheduler: load_scheduler(&dir.join("decoder_scheduler"))?,
            super_res_scheduler: load_scheduler(&dir.join("super_res_scheduler"))?,
            empty_prompt,
            decoder_size,
            super_res_size,
        },
        report,
    })
}
