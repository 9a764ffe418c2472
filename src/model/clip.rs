//! The CLIP vision transformer (burn), for any Hugging Face CLIP config: patch embedding without
//! bias, class and position embeddings, pre-layernorm, pre-norm encoder layers (`quick_gelu` or
//! `gelu`), post-layernorm on the class token, visual projection; every hidden state on request.
//!
//! Weight names follow Hugging Face's exactly (`vision_model.encoder.layers.N.self_attn.q_proj`,
//! `pre_layrnorm` sic, ...), so `load.rs` maps a `model.safetensors` onto this module with only
//! LayerNorm renames and Linear transposes. Not here yet: the text tower.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use serde::Deserialize;

/// `vision_config` of a Hugging Face CLIP `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_channels() -> usize {
    3
}

impl VisionConfig {
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn init<B: Backend>(
        &self,
        projection_dim: Option<usize>,
        device: &B::Device,
    ) -> ClipVision<B> {
        let h = self.hidden_size;
        let n_positions = self.patches_per_side().pow(2) + 1;
        ClipVision {
            vision_model: VisionTransformer {
                embeddings: VisionEmbeddings {
                    class_embedding: Param::from_tensor(Tensor::zeros([h], device)),
                    patch_embedding: Conv2dConfig::new(
                        [self.num_channels, h],
                        [self.patch_size; 2],
                    )
                    .with_stride([self.patch_size; 2])
                    .with_bias(false)
                    .init(device),
                    position_embedding: EmbeddingConfig::new(n_positions, h).init(device),
                },
                pre_layrnorm: LayerNormConfig::new(h)
                    .with_epsilon(self.layer_norm_eps)
                    .init(device),
                encoder: Encoder::new(
                    h,
                    self.intermediate_size,
                    self.num_attention_heads,
                    self.num_hidden_layers,
                    self.layer_norm_eps,
                    &self.hidden_act,
                    device,
                ),
                post_layernorm: LayerNormConfig::new(h)
                    .with_epsilon(self.layer_norm_eps)
                    .init(device),
            },
            visual_projection: projection_dim
                .map(|p| LinearConfig::new(h, p).with_bias(false).init(device)),
        }
    }
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub out_proj: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> Attention<B> {
    /// `x`: [batch, tokens, hidden]; `causal` for the text tower.
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let [b, t, h] = x.dims();
        let d = h / self.heads;
        let split = |y: Tensor<B, 3>| y.reshape([b, t, self.heads, d]).swap_dims(1, 2);
        let (q, k, v) = (
            split(self.q_proj.forward(x.clone())),
            split(self.k_proj.forward(x.clone())),
            split(self.v_proj.forward(x)),
        );
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        let out = attention(q, k, v, None, None, options);
        self.out_proj
            .forward(out.swap_dims(1, 2).reshape([b, t, h]))
    }
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub quick_gelu: bool,
}

impl<B: Backend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.fc1.forward(x);
        // quick_gelu: x * sigmoid(1.702 x), as OpenAI CLIP; burn has no such activation.
        let x = if self.quick_gelu {
            x.clone() * sigmoid(x * 1.702)
        } else {
            gelu(x)
        };
        self.fc2.forward(x)
    }
}

#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    pub self_attn: Attention<B>,
    pub layer_norm1: LayerNorm<B>,
    pub mlp: Mlp<B>,
    pub layer_norm2: LayerNorm<B>,
}

impl<B: Backend> EncoderLayer<B> {
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), causal);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub layers: Vec<EncoderLayer<B>>,
}

impl<B: Backend> Encoder<B> {
    /// `layers` pre-norm blocks of width `hidden` (shared by the vision and text towers).
    pub fn new(
        hidden: usize,
        intermediate: usize,
        heads: usize,
        layers: usize,
        eps: f64,
        activation: &str,
        device: &B::Device,
    ) -> Encoder<B> {
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let norm = || LayerNormConfig::new(hidden).with_epsilon(eps).init(device);
        let layer = || EncoderLayer {
            self_attn: Attention {
                q_proj: linear(hidden, hidden),
                k_proj: linear(hidden, hidden),
                v_proj: linear(hidden, hidden),
                out_proj: linear(hidden, hidden),
                heads,
            },
            layer_norm1: norm(),
            mlp: Mlp {
                fc1: linear(hidden, intermediate),
                fc2: linear(intermediate, hidden),
                quick_gelu: activation == "quick_gelu",
            },
            layer_norm2: norm(),
        };
        Encoder {
            layers: (0..layers).map(|_| layer()).collect(),
        }
    }
}

#[derive(Module, Debug)]
pub struct VisionEmbeddings<B: Backend> {
    pub class_embedding: Param<Tensor<B, 1>>,
    pub patch_embedding: Conv2d<B>,
    pub position_embedding: Embedding<B>,
}

#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    pub embeddings: VisionEmbeddings<B>,
    pub pre_layrnorm: LayerNorm<B>,
    pub encoder: Encoder<B>,
    pub post_layernorm: LayerNorm<B>,
}

/// The vision tower with its projection; field names are Hugging Face's top-level names.
#[derive(Module, Debug)]
pub struct ClipVision<B: Backend> {
    pub vision_model: VisionTransformer<B>,
    pub visual_projection: Option<Linear<B>>,
}

/// What a forward pass returns.
pub struct VisionOutput<B: Backend> {
    /// `hidden_states[0]` is the encoder input (after `pre_layrnorm`), `hidden_states[i]` the
    /// output of block i (1-based), as Hugging Face's `output_hidden_states`.
    pub hidden_states: Vec<Tensor<B, 3>>,
    pub last_hidden_state: Tensor<B, 3>,
    /// `post_layernorm` of the class token.
    pub pooler_output: Tensor<B, 2>,
    /// The pooled output through the visual projection (not normalised), when there is one.
    pub image_embeds: Option<Tensor<B, 2>>,
}

impl<B: Backend> ClipVision<B> {
    /// `pixels`: [batch, channels, size, size], already preprocessed (`preprocess.rs`).
    pub fn forward(&self, pixels: Tensor<B, 4>, keep_hidden_states: bool) -> VisionOutput<B> {
        let vm = &self.vision_model;
        let patches = vm.embeddings.patch_embedding.forward(pixels); // [b, h, g, g]
        let [b, h, g1, g2] = patches.dims();
        let patches = patches.reshape([b, h, g1 * g2]).swap_dims(1, 2); // [b, n, h]
        let class = vm
            .embeddings
            .class_embedding
            .val()
            .reshape([1, 1, h])
            .repeat_dim(0, b);
        let tokens = Tensor::cat(vec![class, patches], 1);
        let n = g1 * g2 + 1;
        let device = tokens.device();
        let positions = Tensor::<B, 1, Int>::arange(0..n as i64, &device).reshape([1, n]);
        let x = tokens + vm.embeddings.position_embedding.forward(positions);
        let mut x = vm.pre_layrnorm.forward(x);
        let mut hidden_states = Vec::new();
        for layer in &vm.encoder.layers {
            if keep_hidden_states {
                hidden_states.push(x.clone());
            }
            x = layer.forward(x, false);
        }
        if keep_hidden_states {
            hidden_states.push(x.clone());
        }
        let class_token = x.clone().slice([0..b, 0..1, 0..h]).reshape([b, h]);
        let pooler_output = vm.post_layernorm.forward(class_token);
        let image_embeds = self
            .visual_projection
            .as_ref()
            .map(|p| p.forward(pooler_output.clone()));
        VisionOutput {
            hidden_states,
            last_hidden_state: x,
            pooler_output,
            image_embeds,
        }
    }
}
