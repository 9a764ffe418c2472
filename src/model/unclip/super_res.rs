//! Karlo's super-resolution UNets (`super_res_first`, `super_res_last`): diffusers'
//! `UNet2DModel` with `ResnetDownsampleBlock2D` / `ResnetUpsampleBlock2D` blocks and a mid block
//! of two ResNets without attention. The input is the noisy high-resolution sample
//! concatenated with the upscaled low-resolution image; conditioning is the timestep only.
//!
//! Not here: attention blocks, class conditioning, Fourier time embeddings, skip blocks.

use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::nn::GroupNorm;
use burn::prelude::*;
use burn::tensor::activation::silu;
use serde::Deserialize;
use serde_json::Value;

use super::blocks::{AttentionSettings, DownBlock, MidBlock, UpBlock};
use super::config::{
    block_kinds, check_class, check_fixed, check_levels, from_value, read_value, BlockKind,
    ConfigError, Fixed, UNET_FIXED,
};
use super::resnet::{conv, group_norm, ResnetSettings};
use super::time::{timestep_features, TimestepEmbedding};
use super::InputError;

/// `UNet2DModel`'s `config.json`: the options these blocks use, with diffusers' defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SuperResConfig {
    pub sample_size: Option<usize>,
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub mid_block_type: Option<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default = "default_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "two")]
    pub layers_per_block: usize,
    #[serde(default = "one")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "eps")]
    pub norm_eps: f64,
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
}

fn three() -> usize {
    3
}
fn two() -> usize {
    2
}
fn thirty_two() -> usize {
    32
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn eps() -> f64 {
    1e-5
}
fn default_channels() -> Vec<usize> {
    vec![224, 448, 672, 896]
}
fn default_shift() -> String {
    "default".into()
}

/// Options we support only at these values (absent: diffusers' default, in the middle).
const FIXED: [Fixed; 3] = [
    (
        "mid_block_type",
        "\"UNetMidBlock2D\"",
        &["\"UNetMidBlock2D\"", "null"],
    ),
    ("class_embed_type", "null", &["null"]),
    ("num_class_embeds", "null", &["null"]),
];

impl SuperResConfig {
    pub fn from_file(path: &Path) -> Result<SuperResConfig, ConfigError> {
        SuperResConfig::from_json(path, read_value(path, "UNet2DModel")?)
    }

    /// Checks the options on the raw JSON, then reads and validates the config.
    pub fn from_json(path: &Path, json: Value) -> Result<SuperResConfig, ConfigError> {
        check_class(path, &json, "UNet2DModel")?;
        check_fixed(path, &json, &UNET_FIXED)?;
        check_fixed(path, &json, &FIXED)?;
        // UNet2DModel's default mid block has attention; Karlo's configs turn it off.
        if json.get("mid_block_type") != Some(&Value::Null) {
            check_fixed(path, &json, &[("add_attention", "true", &["false"])])?;
        }
        let config: SuperResConfig = from_value(path, "UNet2DModel", json)?;
        let resnets = [("ResnetDownsampleBlock2D", BlockKind::Resnet)];
        let down = block_kinds(path, "down_block_types", &config.down_block_types, &resnets)?;
        let resnets = [("ResnetUpsampleBlock2D", BlockKind::Resnet)];
        let up = block_kinds(path, "up_block_types", &config.up_block_types, &resnets)?;
        let ch = &config.block_out_channels;
        check_levels(path, ch, config.norm_num_groups, down.len(), up.len())?;
        Ok(config)
    }

    pub fn time_embed_dim(&self) -> usize {
        let first = self.block_out_channels.first().copied().unwrap_or(0);
        self.time_embedding_dim.unwrap_or(first * 4)
    }
}

#[derive(Module, Debug)]
pub struct SuperRes<B: Backend> {
    pub conv_in: Conv2d<B>,
    pub time_embedding: TimestepEmbedding<B>,
    pub down_blocks: Vec<DownBlock<B>>,
    pub mid_block: Option<MidBlock<B>>,
    pub up_blocks: Vec<UpBlock<B>>,
    pub conv_norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
    in_channels: usize,
    time_channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f32,
    factor: usize,
}

impl SuperResConfig {
    /// The module with initial weights (for a config `from_file` or `from_json` accepted).
    pub fn init<B: Backend>(&self, device: &B::Device) -> SuperRes<B> {
        let ch = &self.block_out_channels;
        let n = ch.len();
        let r = ResnetSettings {
            groups: self.norm_num_groups,
            eps: self.norm_eps,
            temb: self.time_embed_dim(),
            scale_shift: self.resnet_time_scale_shift == "scale_shift",
            skip_time_act: false,
            output_scale_factor: 1.0,
        };
        // Never used: these blocks have no attention.
        let no_attention = AttentionSettings {
            head_dim: 1,
            context_dim: 1,
        };
        let down_blocks = (0..n)
            .map(|i| {
                let input = if i == 0 { ch[0] } else { ch[i - 1] };
                let layers = self.layers_per_block;
                DownBlock::new(
                    BlockKind::Resnet,
                    layers,
                    input,
                    ch[i],
                    i + 1 < n,
                    &r,
                    no_attention,
                    device,
                )
            })
            .collect();
        let mid_r = ResnetSettings {
            output_scale_factor: self.mid_block_scale_factor as f32,
            ..r
        };
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let up_blocks = (0..n)
            .map(|i| {
                let previous = if i == 0 { rev[0] } else { rev[i - 1] };
                UpBlock::new(
                    BlockKind::Resnet,
                    self.layers_per_block + 1,
                    rev[(i + 1).min(n - 1)],
                    rev[i],
                    previous,
                    i + 1 < n,
                    &r,
                    no_attention,
                    device,
                )
            })
            .collect();
        SuperRes {
            conv_in: conv(self.in_channels, ch[0], 3, device),
            time_embedding: TimestepEmbedding::new(ch[0], self.time_embed_dim(), device),
            down_blocks,
            mid_block: self
                .mid_block_type
                .is_some()
                .then(|| MidBlock::new(ch[n - 1], &mid_r, None, device)),
            up_blocks,
            conv_norm_out: group_norm(self.norm_num_groups, ch[0], self.norm_eps, device),
            conv_out: conv(ch[0], self.out_channels, 3, device),
            in_channels: self.in_channels,
            time_channels: ch[0],
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift as f32,
            factor: 1 << (n - 1),
        }
    }
}

impl<B: Backend> SuperRes<B> {
    /// `sample` [b, in_channels, h, w] (noisy sample and upscaled image, concatenated);
    /// `timesteps` one per row.
    pub fn forward(
        &self,
        sample: Tensor<B, 4>,
        timesteps: &[f32],
    ) -> Result<Tensor<B, 4>, InputError> {
        let [b, c, h, w] = sample.dims();
        if c != self.in_channels || h % self.factor != 0 || w % self.factor != 0 {
            return Err(InputError::new(
                "super-resolution UNet",
                format!(
                    "sample is {:?}; expected {} channels and sides that are multiples of {}",
                    sample.dims(),
                    self.in_channels,
                    self.factor
                ),
            ));
        }
        if timesteps.len() != b {
            return Err(InputError::new(
                "super-resolution UNet",
                format!("{} timesteps for {b} rows", timesteps.len()),
            ));
        }
        let t = timestep_features::<B>(
            timesteps,
            self.time_channels,
            self.flip_sin_to_cos,
            self.freq_shift,
            &sample.device(),
        );
        let emb = self.time_embedding.forward(t);
        let mut h = self.conv_in.forward(sample);
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            h = block.forward(h, &emb, None, &mut skips);
        }
        if let Some(mid) = &self.mid_block {
            h = mid.forward(h, &emb, None);
        }
        for block in &self.up_blocks {
            h = block.forward(h, &emb, None, &mut skips);
        }
        let h = silu(self.conv_norm_out.forward(h));
        Ok(self.conv_out.forward(h))
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }
}
