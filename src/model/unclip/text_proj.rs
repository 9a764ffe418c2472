//! diffusers' `UnCLIPTextProjModel`: combines the CLIP image embedding with the text encoder's
//! outputs into what the decoder is conditioned on — an additive time embedding (projected
//! image embedding + projected pooled text embedding) and the context tokens (the image
//! embedding as `clip_extra_context_tokens` tokens, then the projected, layer-normed text
//! states). With classifier-free guidance the learned "no image" embedding is put in front of
//! the batch. Not here: the text encoder itself (`clip_text.rs`).

use std::path::Path;

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use serde::Deserialize;

use super::config::{check_class, from_value, read_value, ConfigError};
use super::InputError;

/// `UnCLIPTextProjModel`'s `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextProjConfig {
    #[serde(default = "four")]
    pub clip_extra_context_tokens: usize,
    #[serde(default = "clip_dim")]
    pub clip_embeddings_dim: usize,
    pub time_embed_dim: usize,
    pub cross_attention_dim: usize,
}

fn four() -> usize {
    4
}
fn clip_dim() -> usize {
    768
}

impl TextProjConfig {
    pub fn from_file(path: &Path) -> Result<TextProjConfig, ConfigError> {
        let json = read_value(path, "UnCLIPTextProjModel")?;
        check_class(path, &json, "UnCLIPTextProjModel")?;
        from_value(path, "UnCLIPTextProjModel", json)
    }
}

#[derive(Module, Debug)]
pub struct TextProj<B: Backend> {
    pub learned_classifier_free_guidance_embeddings: Param<Tensor<B, 1>>,
    pub embedding_proj: Linear<B>,
    pub clip_image_embeddings_project_to_time_embeddings: Linear<B>,
    pub clip_extra_context_tokens_proj: Linear<B>,
    pub encoder_hidden_states_proj: Linear<B>,
    pub text_encoder_hidden_states_norm: LayerNorm<B>,
    clip_extra_context_tokens: usize,
    clip_embeddings_dim: usize,
    cross_attention_dim: usize,
}

/// The decoder's conditioning.
#[derive(Debug, Clone)]
pub struct Projected<B: Backend> {
    /// [b, extra tokens + text tokens, cross_attention_dim]
    pub hidden_states: Tensor<B, 3>,
    /// [b, time_embed_dim], the decoder's `class_labels`.
    pub time_embeddings: Tensor<B, 2>,
}

impl TextProjConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> TextProj<B> {
        let d = self.clip_embeddings_dim;
        let linear = |o: usize| LinearConfig::new(d, o).init(device);
        TextProj {
            learned_classifier_free_guidance_embeddings: Param::from_tensor(Tensor::zeros(
                [d],
                device,
            )),
            embedding_proj: linear(self.time_embed_dim),
            clip_image_embeddings_project_to_time_embeddings: linear(self.time_embed_dim),
            clip_extra_context_tokens_proj: linear(
                self.clip_extra_context_tokens * self.cross_attention_dim,
            ),
            encoder_hidden_states_proj: linear(self.cross_attention_dim),
            text_encoder_hidden_states_norm: LayerNormConfig::new(self.cross_attention_dim)
                .init(device),
            clip_extra_context_tokens: self.clip_extra_context_tokens,
            clip_embeddings_dim: d,
            cross_attention_dim: self.cross_attention_dim,
        }
    }
}

impl<B: Backend> TextProj<B> {
    pub fn extra_tokens(&self) -> usize {
        self.clip_extra_context_tokens
    }

    /// `image_embeddings` [n, D]; `prompt_embeds` [m, D] and `text_encoder_hidden_states`
    /// [m, L, D], where m = 2n with `classifier_free_guidance` (unconditional rows first) and n
    /// without.
    pub fn forward(
        &self,
        image_embeddings: Tensor<B, 2>,
        prompt_embeds: Tensor<B, 2>,
        text_encoder_hidden_states: Tensor<B, 3>,
        classifier_free_guidance: bool,
    ) -> Result<Projected<B>, InputError> {
        let d = self.clip_embeddings_dim;
        let [n, dn] = image_embeddings.dims();
        let image = if classifier_free_guidance {
            let none = self
                .learned_classifier_free_guidance_embeddings
                .val()
                .reshape([1, d])
                .expand([n, d]);
            Tensor::cat(vec![none, image_embeddings], 0)
        } else {
            image_embeddings
        };
        let m = image.dims()[0];
        let [pm, pd] = prompt_embeds.dims();
        let [tm, l, td] = text_encoder_hidden_states.dims();
        if dn != d || pd != d || td != d || pm != m || tm != m {
            return Err(InputError::new(
                "text projection",
                format!(
                    "image embeddings [{n}, {dn}], prompt embeddings [{pm}, {pd}] and text \
                     states [{tm}, {l}, {td}] do not fit: expected width {d} and {m} text rows"
                ),
            ));
        }
        let time_embeddings = self
            .clip_image_embeddings_project_to_time_embeddings
            .forward(image.clone())
            + self.embedding_proj.forward(prompt_embeds);
        // diffusers reshapes the projection to (b, -1, tokens) and then permutes: the token
        // index is the fastest-varying one in the projection's output, not the slowest.
        let k = self.clip_extra_context_tokens;
        let extra = self
            .clip_extra_context_tokens_proj
            .forward(image)
            .reshape([m, self.cross_attention_dim, k])
            .swap_dims(1, 2);
        let text = self.text_encoder_hidden_states_norm.forward(
            self.encoder_hidden_states_proj
                .forward(text_encoder_hidden_states),
        );
        Ok(Projected {
            hidden_states: Tensor::cat(vec![extra, text], 1),
            time_embeddings,
        })
    }
}
