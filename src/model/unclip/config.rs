//! Reading the diffusers `config.json` files of an unCLIP pipeline folder: the errors, the
//! checks shared by every component, and `model_index.json`. Each model's own config struct
//! sits beside the model (`decoder.rs`, `super_res.rs`, `text_proj.rs`, `scheduler.rs`).
//!
//! Unknown keys are tolerated (diffusers writes many, and adds more each release). Options that
//! would change the network and that we do not implement are refused when set to anything but
//! the values we support, with the file, the key, the value and what we support. Keys that
//! cannot change these blocks (dropout, options of block types we refuse anyway) are ignored.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable {what} config: {message}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("{path}: {key} = {value} is not supported (supported: {supported})")]
    Unsupported {
        path: PathBuf,
        key: String,
        value: String,
        supported: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A diffusers option given once for all blocks or once per block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    /// One value per block, or an error naming `key` when a list has the wrong length.
    pub fn resolve(&self, key: &str, blocks: usize, path: &Path) -> Result<Vec<T>, ConfigError> {
        match self {
            PerBlock::One(v) => Ok(vec![v.clone(); blocks]),
            PerBlock::Each(v) if v.len() == blocks => Ok(v.clone()),
            PerBlock::Each(v) => Err(invalid(
                path,
                format!("{key} has {} entries for {blocks} blocks", v.len()),
            )),
        }
    }
}

/// Block types of the UNets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `ResnetDownsampleBlock2D` / `ResnetUpsampleBlock2D`: ResNets, resampling by a ResNet.
    Resnet,
    /// `SimpleCrossAttnDownBlock2D` / `SimpleCrossAttnUpBlock2D`: each ResNet followed by
    /// attention over the text tokens and the image itself (added-KV attention).
    SimpleCrossAttn,
}

/// An option we only support at some values: its key, the value diffusers assumes when the
/// key is absent, and the values we accept, all as JSON text.
pub type Fixed = (&'static str, &'static str, &'static [&'static str]);

pub(crate) fn invalid(path: &Path, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        message,
    }
}

pub(crate) fn unsupported(path: &Path, key: &str, value: String, supported: &str) -> ConfigError {
    ConfigError::Unsupported {
        path: path.to_owned(),
        key: key.to_string(),
        value,
        supported: supported.to_string(),
    }
}

fn parse(text: &str) -> Value {
    // The tables are ours and valid JSON; a typo would show as a refused value in the tests.
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Refuses any `fixed` option whose value (or default, when absent) is not accepted.
pub fn check_fixed(path: &Path, json: &Value, fixed: &[Fixed]) -> Result<(), ConfigError> {
    for (key, default, accepted) in fixed {
        let value = json.get(*key).cloned().unwrap_or_else(|| parse(default));
        if !accepted.iter().any(|a| parse(a) == value) {
            return Err(unsupported(
                path,
                key,
                value.to_string(),
                &accepted.join(", "),
            ));
        }
    }
    Ok(())
}

/// The `_class_name` diffusers recorded, when there is one, must be `expected`.
pub fn check_class(path: &Path, json: &Value, expected: &str) -> Result<(), ConfigError> {
    match json.get("_class_name") {
        Some(found) if found.as_str() != Some(expected) => Err(unsupported(
            path,
            "_class_name",
            found.to_string(),
            expected,
        )),
        _ => Ok(()),
    }
}

/// Block type names to kinds, refusing the names not in `allowed`.
pub fn block_kinds(
    path: &Path,
    key: &str,
    types: &[String],
    allowed: &[(&str, BlockKind)],
) -> Result<Vec<BlockKind>, ConfigError> {
    let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
    types
        .iter()
        .map(|t| {
            allowed
                .iter()
                .find(|(n, _)| n == t)
                .map(|(_, k)| *k)
                .ok_or_else(|| unsupported(path, key, format!("{t:?}"), &names.join(", ")))
        })
        .collect()
}

/// Level counts and GroupNorm divisibility, shared by both UNets.
pub fn check_levels(
    path: &Path,
    channels: &[usize],
    groups: usize,
    down: usize,
    up: usize,
) -> Result<(), ConfigError> {
    if channels.is_empty() || down != channels.len() || up != channels.len() {
        return Err(invalid(
            path,
            format!(
                "{down} down blocks, {up} up blocks and {} block_out_channels must agree",
                channels.len()
            ),
        ));
    }
    if groups == 0 || channels.iter().any(|c| c % groups != 0) {
        return Err(invalid(
            path,
            format!(
                "block_out_channels {channels:?} must be multiples of norm_num_groups {groups}"
            ),
        ));
    }
    Ok(())
}

/// Options of both UNets that we support only at these values.
pub const UNET_FIXED: [Fixed; 4] = [
    ("center_input_sample", "false", &["false"]),
    ("act_fn", "\"silu\"", &["\"silu\"", "\"swish\""]),
    ("time_embedding_type", "\"positional\"", &["\"positional\""]),
    (
        "resnet_time_scale_shift",
        "\"default\"",
        &["\"default\"", "\"scale_shift\""],
    ),
];

pub fn read_value(path: &Path, what: &'static str) -> Result<Value, ConfigError> {
    read_json(path, what)
}

/// Reads `path` as JSON into `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        what,
        message: e.to_string(),
    })
}

/// A parsed JSON value into `T`, errors naming `path`.
pub fn from_value<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    json: Value,
) -> Result<T, ConfigError> {
    serde_json::from_value(json).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        what,
        message: e.to_string(),
    })
}

/// The components we read, with the class each must have been saved as.
pub const COMPONENTS: [(&str, &str); 7] = [
    ("decoder", "UNet2DConditionModel"),
    ("text_proj", "UnCLIPTextProjModel"),
    ("super_res_first", "UNet2DModel"),
    ("super_res_last", "UNet2DModel"),
    ("decoder_scheduler", "UnCLIPScheduler"),
    ("super_res_scheduler", "UnCLIPScheduler"),
    ("text_encoder", "CLIPTextModelWithProjection"),
];

/// Checks `model_index.json`: an unCLIP pipeline (image variation, or text-to-image, whose
/// decoder side is the same) with the component classes we read. Only the class is compared:
/// Karlo's own folders name the text projection's library "unclip", newer diffusers "diffusers".
pub fn check_model_index(path: &Path) -> Result<String, ConfigError> {
    let json = read_value(path, "model_index.json")?;
    let class = json.get("_class_name").cloned().unwrap_or(Value::Null);
    let supported = ["UnCLIPImageVariationPipeline", "UnCLIPPipeline"];
    let class = match class.as_str() {
        Some(c) if supported.contains(&c) => c.to_string(),
        _ => {
            return Err(unsupported(
                path,
                "_class_name",
                class.to_string(),
                &supported.join(", "),
            ))
        }
    };
    for (name, expected) in COMPONENTS {
        let found = json.get(name).and_then(|v| v.get(1));
        if found.and_then(Value::as_str) != Some(expected) {
            let found = found.map_or("absent".to_string(), Value::to_string);
            return Err(unsupported(path, name, found, expected));
        }
    }
    Ok(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_options_refuse_other_values_and_absent_non_defaults() {
        let p = Path::new("config.json");
        let fixed: [Fixed; 2] = [
            ("cross_attention_norm", "null", &["null"]),
            ("add_attention", "true", &["false"]),
        ];
        let ok = serde_json::json!({"add_attention": false, "extra": 1});
        assert!(check_fixed(p, &ok, &fixed).is_ok());
        let bad = serde_json::json!({"add_attention": false, "cross_attention_norm": "group_norm"});
        let e = check_fixed(p, &bad, &fixed).unwrap_err().to_string();
        assert!(e.contains("cross_attention_norm = \"group_norm\""), "{e}");
        // Absent means diffusers' default, here one we do not support.
        let e = check_fixed(p, &serde_json::json!({}), &fixed).unwrap_err();
        assert!(e.to_string().contains("add_attention = true"), "{e}");
    }
}
