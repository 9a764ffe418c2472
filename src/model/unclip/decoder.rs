//! Karlo's decoder: diffusers' `UNet2DConditionModel` with Resnet-resampling and
//! Simple-cross-attention blocks. The timestep's sinusoids go through `time_embedding`; the
//! text projection's additive CLIP embedding is added to that ("identity" class embedding);
//! the text projection's tokens are the cross-attention context, masked by the pipeline's
//! attention mask. Output: `out_channels` (6 for Karlo: noise and the learned variance range).
//!
//! Not here: the other diffusers block types, class embeddings other than identity, addition
//! embeddings, ControlNet/adapter residuals; `DecoderConfig` refuses them by name.

use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::nn::GroupNorm;
use burn::prelude::*;
use burn::tensor::activation::silu;
use serde::Deserialize;
use serde_json::Value;

use super::attention::CrossContext;
use super::blocks::{AttentionSettings, DownBlock, MidBlock, UpBlock};
use super::config::{
    block_kinds, check_class, check_fixed, check_levels, from_value, invalid, read_value,
    unsupported, BlockKind, ConfigError, Fixed, PerBlock, UNET_FIXED,
};
use super::resnet::{conv, group_norm, ResnetSettings};
use super::time::{timestep_features, TimestepEmbedding};
use super::InputError;

/// `UNet2DConditionModel`'s `config.json`: the options these blocks use, with diffusers'
/// defaults. The options we refuse are checked on the raw JSON (`FIXED`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoderConfig {
    pub sample_size: Option<usize>,
    #[serde(default = "four")]
    pub in_channels: usize,
    #[serde(default = "four")]
    pub out_channels: usize,
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub mid_block_type: Option<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    #[serde(default = "default_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "two")]
    pub layers_per_block: PerBlock<usize>,
    #[serde(default = "one")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "groups")]
    pub norm_num_groups: Option<usize>,
    #[serde(default = "eps")]
    pub norm_eps: f64,
    #[serde(default = "cross")]
    pub cross_attention_dim: PerBlock<usize>,
    #[serde(default = "head")]
    pub attention_head_dim: PerBlock<usize>,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default)]
    pub resnet_skip_time_act: bool,
    #[serde(default = "one")]
    pub resnet_out_scale_factor: f64,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default = "three")]
    pub conv_in_kernel: usize,
    #[serde(default = "three")]
    pub conv_out_kernel: usize,
}

fn four() -> usize {
    4
}
fn three() -> usize {
    3
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
fn groups() -> Option<usize> {
    Some(32)
}
fn default_channels() -> Vec<usize> {
    vec![320, 640, 1280, 1280]
}
fn two() -> PerBlock<usize> {
    PerBlock::One(2)
}
fn cross() -> PerBlock<usize> {
    PerBlock::One(1280)
}
fn head() -> PerBlock<usize> {
    PerBlock::One(8)
}
fn default_shift() -> String {
    "default".into()
}

/// Options we support only at these values (absent: diffusers' default, in the middle).
const FIXED: [Fixed; 16] = [
    (
        "mid_block_type",
        "\"UNetMidBlock2DCrossAttn\"",
        &["\"UNetMidBlock2DSimpleCrossAttn\"", "null"],
    ),
    ("class_embed_type", "null", &["\"identity\"", "null"]),
    ("only_cross_attention", "false", &["false"]),
    ("mid_block_only_cross_attention", "null", &["null", "false"]),
    ("encoder_hid_dim", "null", &["null"]),
    ("encoder_hid_dim_type", "null", &["null"]),
    ("num_attention_heads", "null", &["null"]),
    ("dual_cross_attention", "false", &["false"]),
    ("addition_embed_type", "null", &["null"]),
    ("num_class_embeds", "null", &["null"]),
    ("time_embedding_act_fn", "null", &["null"]),
    ("timestep_post_act", "null", &["null"]),
    ("time_cond_proj_dim", "null", &["null"]),
    ("attention_type", "\"default\"", &["\"default\""]),
    ("class_embeddings_concat", "false", &["false"]),
    ("cross_attention_norm", "null", &["null"]),
];

/// The decoder's settings resolved per block.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderPlan {
    pub down: Vec<BlockKind>,
    pub up: Vec<BlockKind>,
    pub layers: Vec<usize>,
    pub cross_attention_dim: usize,
    pub attention_head_dim: Vec<usize>,
    pub groups: usize,
    pub time_embed_dim: usize,
}

impl DecoderConfig {
    pub fn from_file(path: &Path) -> Result<DecoderConfig, ConfigError> {
        DecoderConfig::from_json(path, read_value(path, "UNet2DConditionModel")?)
    }

    /// Checks the options on the raw JSON, then reads and validates the config.
    pub fn from_json(path: &Path, json: Value) -> Result<DecoderConfig, ConfigError> {
        check_class(path, &json, "UNet2DConditionModel")?;
        check_fixed(path, &json, &UNET_FIXED)?;
        check_fixed(path, &json, &FIXED)?;
        let config: DecoderConfig = from_value(path, "UNet2DConditionModel", json)?;
        config.plan(path)?;
        Ok(config)
    }

    /// Resolves the per-block options; `path` names the file in errors.
    pub fn plan(&self, path: &Path) -> Result<DecoderPlan, ConfigError> {
        let down = block_kinds(
            path,
            "down_block_types",
            &self.down_block_types,
            &[
                ("ResnetDownsampleBlock2D", BlockKind::Resnet),
                ("SimpleCrossAttnDownBlock2D", BlockKind::SimpleCrossAttn),
            ],
        )?;
        let up = block_kinds(
            path,
            "up_block_types",
            &self.up_block_types,
            &[
                ("ResnetUpsampleBlock2D", BlockKind::Resnet),
                ("SimpleCrossAttnUpBlock2D", BlockKind::SimpleCrossAttn),
            ],
        )?;
        let groups = self
            .norm_num_groups
            .ok_or_else(|| unsupported(path, "norm_num_groups", "null".into(), "a number"))?;
        let ch = &self.block_out_channels;
        check_levels(path, ch, groups, down.len(), up.len())?;
        let n = ch.len();
        for (key, k) in [
            ("conv_in_kernel", self.conv_in_kernel),
            ("conv_out_kernel", self.conv_out_kernel),
        ] {
            if k % 2 == 0 {
                return Err(unsupported(path, key, k.to_string(), "odd sizes"));
            }
        }
        let layers = self.layers_per_block.resolve("layers_per_block", n, path)?;
        let cross = self
            .cross_attention_dim
            .resolve("cross_attention_dim", n, path)?;
        // One set of text tokens feeds every block, so one width.
        if cross.iter().any(|&d| d != cross[0]) {
            let value = format!("{cross:?}");
            return Err(unsupported(path, "cross_attention_dim", value, "one width"));
        }
        let heads = self
            .attention_head_dim
            .resolve("attention_head_dim", n, path)?;
        // Heads are channels / head_dim in each attention block; up block i takes
        // attention_head_dim[i] unreversed, as diffusers builds it.
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mid = (ch[n - 1], BlockKind::SimpleCrossAttn, n - 1);
        let mid = self.mid_block_type.as_ref().map(|_| mid);
        let blocks = (0..n).flat_map(|i| [(ch[i], down[i], i), (rev[i], up[i], i)]);
        for (c, kind, i) in blocks.chain(mid) {
            if kind == BlockKind::SimpleCrossAttn && (heads[i] == 0 || c < heads[i]) {
                return Err(invalid(
                    path,
                    format!("attention_head_dim {} does not fit {c} channels", heads[i]),
                ));
            }
        }
        Ok(DecoderPlan {
            down,
            up,
            layers,
            cross_attention_dim: cross[0],
            attention_head_dim: heads,
            groups,
            time_embed_dim: self.time_embedding_dim.unwrap_or(ch[0] * 4),
        })
    }
}

#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
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
    class_identity: bool,
    time_embed_dim: usize,
    context_dim: usize,
    /// 2^(number of downsamplers): the sample side must be a multiple.
    factor: usize,
}

impl DecoderConfig {
    /// The module with initial weights; `plan` from `DecoderConfig::plan`.
    pub fn init<B: Backend>(&self, plan: &DecoderPlan, device: &B::Device) -> Decoder<B> {
        let ch = &self.block_out_channels;
        let n = ch.len();
        let r = ResnetSettings {
            groups: plan.groups,
            eps: self.norm_eps,
            temb: plan.time_embed_dim,
            scale_shift: self.resnet_time_scale_shift == "scale_shift",
            skip_time_act: self.resnet_skip_time_act,
            output_scale_factor: self.resnet_out_scale_factor as f32,
        };
        let attn = |i: usize| AttentionSettings {
            head_dim: plan.attention_head_dim[i],
            context_dim: plan.cross_attention_dim,
        };
        let down_blocks = (0..n)
            .map(|i| {
                let input = if i == 0 { ch[0] } else { ch[i - 1] };
                DownBlock::new(
                    plan.down[i],
                    plan.layers[i],
                    input,
                    ch[i],
                    i + 1 < n,
                    &r,
                    attn(i),
                    device,
                )
            })
            .collect();
        let mid_r = ResnetSettings {
            output_scale_factor: self.mid_block_scale_factor as f32,
            ..r
        };
        let mid_block = self
            .mid_block_type
            .is_some()
            .then(|| MidBlock::new(ch[n - 1], &mid_r, Some(attn(n - 1)), device));
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let up_blocks = (0..n)
            .map(|i| {
                let previous = if i == 0 { rev[0] } else { rev[i - 1] };
                // diffusers indexes attention_head_dim with i here, unreversed; layers_per_block
                // reversed.
                UpBlock::new(
                    plan.up[i],
                    plan.layers[n - 1 - i] + 1,
                    rev[(i + 1).min(n - 1)],
                    rev[i],
                    previous,
                    i + 1 < n,
                    &r,
                    attn(i),
                    device,
                )
            })
            .collect();
        Decoder {
            conv_in: conv(self.in_channels, ch[0], self.conv_in_kernel, device),
            time_embedding: TimestepEmbedding::new(ch[0], plan.time_embed_dim, device),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(plan.groups, ch[0], self.norm_eps, device),
            conv_out: conv(ch[0], self.out_channels, self.conv_out_kernel, device),
            in_channels: self.in_channels,
            time_channels: ch[0],
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift as f32,
            class_identity: self.class_embed_type.is_some(),
            time_embed_dim: plan.time_embed_dim,
            context_dim: plan.cross_attention_dim,
            factor: 1 << (n - 1),
        }
    }
}

impl<B: Backend> Decoder<B> {
    /// `sample` [b, in_channels, h, w]; `timesteps` one per row; `encoder_hidden_states`
    /// [b, tokens, cross_attention_dim]; `class_labels` [b, time_embed_dim] (the text
    /// projection's additive embedding; required with the identity class embedding);
    /// `attention_mask` [b, tokens], 1 for tokens to attend and 0 for the rest, as diffusers.
    pub fn forward(
        &self,
        sample: Tensor<B, 4>,
        timesteps: &[f32],
        encoder_hidden_states: Tensor<B, 3>,
        class_labels: Option<Tensor<B, 2>>,
        attention_mask: Option<Tensor<B, 2>>,
    ) -> Result<Tensor<B, 4>, InputError> {
        let err = |m: String| InputError::new("decoder", m);
        let [b, c, h, w] = sample.dims();
        if c != self.in_channels || h % self.factor != 0 || w % self.factor != 0 {
            return Err(err(format!(
                "sample is {:?}; expected {} channels and sides that are multiples of {}",
                sample.dims(),
                self.in_channels,
                self.factor
            )));
        }
        if timesteps.len() != b {
            return Err(err(format!("{} timesteps for {b} rows", timesteps.len())));
        }
        let [eb, tokens, ew] = encoder_hidden_states.dims();
        if eb != b || ew != self.context_dim {
            return Err(err(format!(
                "encoder_hidden_states is {:?}; expected [{b}, tokens, {}]",
                encoder_hidden_states.dims(),
                self.context_dim
            )));
        }
        if let Some(m) = &attention_mask {
            if m.dims() != [b, tokens] {
                return Err(err(format!(
                    "attention_mask is {:?}; expected [{b}, {tokens}]",
                    m.dims()
                )));
            }
        }
        let device = sample.device();
        let t = timestep_features::<B>(
            timesteps,
            self.time_channels,
            self.flip_sin_to_cos,
            self.freq_shift,
            &device,
        );
        let mut emb = self.time_embedding.forward(t);
        if self.class_identity {
            let labels = class_labels.ok_or_else(|| {
                err("class_labels are required (identity class embedding)".into())
            })?;
            if labels.dims() != [b, self.time_embed_dim] {
                return Err(err(format!(
                    "class_labels are {:?}; expected [{b}, {}]",
                    labels.dims(),
                    self.time_embed_dim
                )));
            }
            emb = emb + labels;
        }
        let context = CrossContext {
            states: encoder_hidden_states,
            bias: attention_mask.map(|m| (m.neg() + 1.0) * -10000.0),
        };
        let mut h = self.conv_in.forward(sample);
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            h = block.forward(h, &emb, Some(&context), &mut skips);
        }
        if let Some(mid) = &self.mid_block {
            h = mid.forward(h, &emb, Some(&context));
        }
        for block in &self.up_blocks {
            h = block.forward(h, &emb, Some(&context), &mut skips);
        }
        let h = silu(self.conv_norm_out.forward(h));
        Ok(self.conv_out.forward(h))
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KARLO: &str = r#"{"sample_size": 64, "layers_per_block": 3,
        "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
            "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
        "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
            "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
        "block_out_channels": [320, 640, 960, 1280], "in_channels": 3, "out_channels": 6,
        "cross_attention_dim": 1536, "class_embed_type": "identity", "attention_head_dim": 64,
        "resnet_time_scale_shift": "scale_shift", "some_future_key": [1, 2]}"#;

    fn read(json: &str) -> Result<DecoderPlan, ConfigError> {
        let path = Path::new("decoder/config.json");
        let config = DecoderConfig::from_json(path, serde_json::from_str(json).unwrap())?;
        config.plan(path)
    }

    #[test]
    fn karlos_decoder_config_is_accepted_with_unknown_keys() {
        let plan = read(KARLO).unwrap();
        assert_eq!(plan.layers, vec![3; 4]);
        assert_eq!(plan.time_embed_dim, 1280);
        assert_eq!(plan.up[3], BlockKind::Resnet);
        assert_eq!(plan.cross_attention_dim, 1536);
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        let refused = |from: &str, to: &str, names: &[&str]| {
            let bad = KARLO.replacen(from, to, 1);
            assert_ne!(bad, KARLO);
            let e = read(&bad).unwrap_err().to_string();
            assert!(names.iter().all(|n| e.contains(n)), "{e}");
        };
        refused(
            "\"ResnetUpsampleBlock2D\"",
            "\"CrossAttnUpBlock2D\"",
            &[
                "up_block_types",
                "CrossAttnUpBlock2D",
                "ResnetUpsampleBlock2D",
            ],
        );
        refused(
            "\"identity\"",
            "\"timestep\"",
            &["class_embed_type", "timestep"],
        );
        let extra = "\"sample_size\": 64, \"addition_embed_type\": \"text\"";
        refused("\"sample_size\": 64", extra, &["addition_embed_type"]);
        // An absent mid_block_type is diffusers' cross-attention mid block, which we lack.
        let no_mid = "\"mid_block_type\": \"UNetMidBlock2DSimpleCrossAttn\",";
        refused(no_mid, "", &["mid_block_type", "UNetMidBlock2DCrossAttn"]);
        refused(
            "\"attention_head_dim\": 64",
            "\"attention_head_dim\": 4000",
            &["4000"],
        );
        // A default-valued option we do not implement is fine.
        let ok = KARLO.replace(
            "\"in_channels\"",
            "\"dual_cross_attention\": false, \"in_channels\"",
        );
        assert!(read(&ok).is_ok());
    }
}
