//! The CLIP text transformer (burn): token and position embeddings, causal pre-norm encoder
//! layers (shared with the vision tower), final layernorm, pooling at the end-of-text token,
//! text projection. Weight names are Hugging Face's (`text_model.*`, `text_projection`).
//!
//! Padding needs no mask here: attention is causal and padding only ever follows the
//! end-of-text token, so no real token can see it (transformers gives the same outputs at
//! real positions with or without an attention mask).

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::Deserialize;

use super::clip::Encoder;

/// `text_config` of a Hugging Face CLIP `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// OpenAI CLIP's end-of-text id (49407) when the config does not say.
    #[serde(default = "default_eos")]
    pub eos_token_id: usize,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eos() -> usize {
    49407
}

#[derive(Module, Debug)]
pub struct TextEmbeddings<B: Backend> {
    pub token_embedding: Embedding<B>,
    pub position_embedding: Embedding<B>,
}

#[derive(Module, Debug)]
pub struct TextTransformer<B: Backend> {
    pub embeddings: TextEmbeddings<B>,
    pub encoder: Encoder<B>,
    pub final_layer_norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct ClipText<B: Backend> {
    pub text_model: TextTransformer<B>,
    pub text_projection: Option<Linear<B>>,
    pub eos_token_id: usize,
}

pub struct TextOutput<B: Backend> {
    /// After the final layernorm.
    pub last_hidden_state: Tensor<B, 3>,
    /// The final hidden state at each sequence's first end-of-text token.
    pub pooler_output: Tensor<B, 2>,
    pub text_embeds: Option<Tensor<B, 2>>,
}

impl TextConfig {
    pub fn init<B: Backend>(
        &self,
        projection_dim: Option<usize>,
        device: &B::Device,
    ) -> ClipText<B> {
        let h = self.hidden_size;
        ClipText {
            text_model: TextTransformer {
                embeddings: TextEmbeddings {
                    token_embedding: EmbeddingConfig::new(self.vocab_size, h).init(device),
                    position_embedding: EmbeddingConfig::new(self.max_position_embeddings, h)
                        .init(device),
                },
                encoder: Encoder::new(
                    h,
                    self.intermediate_size,
                    self.num_attention_heads,
                    self.num_hidden_layers,
                    self.layer_norm_eps,
                    &self.hidden_act,
                    device,
                ),
                final_layer_norm: LayerNormConfig::new(h)
                    .with_epsilon(self.layer_norm_eps)
                    .init(device),
            },
            text_projection: projection_dim
                .map(|p| LinearConfig::new(h, p).with_bias(false).init(device)),
            eos_token_id: self.eos_token_id,
        }
    }
}

impl<B: Backend> ClipText<B> {
    /// `ids`: token ids per sequence, all the same length (padded after end-of-text).
    pub fn forward(&self, ids: &[Vec<u32>], device: &B::Device) -> TextOutput<B> {
        let b = ids.len();
        let t = ids.first().map_or(0, Vec::len);
        let flat: Vec<i64> = ids
            .iter()
            .flat_map(|row| row.iter().map(|&i| i as i64))
            .collect();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, t]), device);
        let positions = Tensor::<B, 1, Int>::arange(0..t as i64, device).reshape([1, t]);
        let tm = &self.text_model;
        let mut x = tm.embeddings.token_embedding.forward(tokens)
            + tm.embeddings.position_embedding.forward(positions);
        for layer in &tm.encoder.layers {
            x = layer.forward(x, true);
        }
        let x = tm.final_layer_norm.forward(x);
        let h = x.dims()[2];
        let pooled: Vec<Tensor<B, 2>> = ids
            .iter()
            .enumerate()
            .map(|(row, seq)| {
                let eos = seq
                    .iter()
                    .position(|&i| i as usize == self.eos_token_id)
                    .unwrap_or(t.saturating_sub(1));
                x.clone()
                    .slice([row..row + 1, eos..eos + 1, 0..h])
                    .reshape([1, h])
            })
            .collect();
        let pooler_output = Tensor::cat(pooled, 0);
        let text_embeds = self
            .text_projection
            .as_ref()
            .map(|p| p.forward(pooler_output.clone()));
        TextOutput {
            last_hidden_state: x,
            pooler_output,
            text_embeds,
        }
    }
}
