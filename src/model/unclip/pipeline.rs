//! The image-variation sampler, step for step as diffusers' `UnCLIPImageVariationPipeline`
//! after the image encoder: the empty prompt's text states (computed once, at load), the text
//! projection, the decoder's reverse diffusion with classifier-free guidance (the learned "no
//! image" embedding as the unconditional half; the guided noise keeps the conditional half's
//! variance channels), x clamped to [-1, 1], the antialiased bicubic upscale, the
//! super-resolution diffusion (`super_res_first` for every step but the last, `super_res_last`
//! for the last) and the map to [0, 1].
//!
//! Not here: encoding an image (the embedding is the caller's), prompts, several images per
//! embedding. Noise comes from the caller, in diffusers' order: decoder latents, one draw per
//! decoder step with t > 0, super-resolution latents, one per super-resolution step with t > 0.

use burn::prelude::*;

use super::decoder::Decoder;
use super::resize::resize_bicubic_antialias;
use super::scheduler::{NoiseSource, SchedulerError, UnclipScheduler};
use super::super_res::SuperRes;
use super::text_proj::TextProj;
use super::InputError;
use crate::model::clip_text::ClipText;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(
        "the text encoder has no projection (text_embeds): expected a CLIPTextModelWithProjection"
    )]
    NoTextProjection,
    #[error("image embeddings are {0:?}; expected [images, width] with at least one image")]
    Embeddings([usize; 2]),
}

/// The text encoder's outputs for the empty prompt, which is all the image-variation pipeline
/// ever encodes (both halves of guidance use it).
#[derive(Debug, Clone)]
pub struct EmptyPrompt<B: Backend> {
    /// Start-of-text, end-of-text, padding to the tokenizer's length.
    pub input_ids: Vec<u32>,
    /// True for the two real tokens, false for the padding.
    pub attention_mask: Vec<bool>,
    /// [1, projection] (`text_embeds`).
    pub prompt_embeds: Tensor<B, 2>,
    /// [1, tokens, width] (`last_hidden_state`).
    pub last_hidden_state: Tensor<B, 3>,
}

impl<B: Backend> EmptyPrompt<B> {
    /// Runs the text tower on the ids (no attention mask, as the pipeline calls it).
    pub fn encode(
        text_encoder: &ClipText<B>,
        input_ids: Vec<u32>,
        attention_mask: Vec<bool>,
        device: &B::Device,
    ) -> Result<EmptyPrompt<B>, PipelineError> {
        let out = text_encoder.forward(std::slice::from_ref(&input_ids), device);
        let prompt_embeds = out.text_embeds.ok_or(PipelineError::NoTextProjection)?;
        Ok(EmptyPrompt {
            input_ids,
            attention_mask,
            prompt_embeds,
            last_hidden_state: out.last_hidden_state,
        })
    }
}

/// Steps and guidance. diffusers' defaults are 25 + 7 steps; ours are the few-step live ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSettings {
    pub decoder_steps: usize,
    pub super_res_steps: usize,
    /// diffusers' `decoder_guidance_scale`; guidance is on when above 1.
    pub guidance_scale: f32,
}

impl Default for SampleSettings {
    fn default() -> SampleSettings {
        SampleSettings {
            decoder_steps: 4,
            super_res_steps: 4,
            guidance_scale: 8.0,
        }
    }
}

/// What sampling gives, NCHW.
#[derive(Debug, Clone)]
pub struct Sampled<B: Backend> {
    /// The decoder's image in [-1, 1], [n, 3, decoder side²].
    pub image_small: Tensor<B, 4>,
    /// The final image in [0, 1], [n, 3, super-resolution side²].
    pub image: Tensor<B, 4>,
}

/// A loaded unCLIP pipeline (see `load.rs`).
#[derive(Debug)]
pub struct Unclip<B: Backend> {
    pub text_proj: TextProj<B>,
    pub decoder: Decoder<B>,
    pub super_res_first: SuperRes<B>,
    pub super_res_last: SuperRes<B>,
    pub decoder_scheduler: UnclipScheduler,
    pub super_res_scheduler: UnclipScheduler,
    pub empty_prompt: EmptyPrompt<B>,
    /// The decoder's `sample_size` and `super_res_first`'s, as the pipeline reads them.
    pub decoder_size: usize,
    pub super_res_size: usize,
    /// Width of the CLIP image embedding the text projection takes.
    pub embedding_dim: usize,
}

impl<B: Backend> Unclip<B> {
    /// Images for CLIP image embeddings [n, embedding_dim].
    pub fn sample(
        &self,
        image_embeddings: Tensor<B, 2>,
        settings: &SampleSettings,
        noise: &mut dyn NoiseSource<B>,
    ) -> Result<Sampled<B>, PipelineError> {
        let [n, width] = image_embeddings.dims();
        if n == 0 || width != self.embedding_dim {
            return Err(PipelineError::Embeddings([n, width]));
        }
        let device = image_embeddings.device();
        let guided = settings.guidance_scale > 1.0;
        let rows = if guided { 2 * n } else { n };
        let prompt = &self.empty_prompt;
        let projected = self.text_proj.forward(
            image_embeddings,
            prompt.prompt_embeds.clone().repeat_dim(0, rows),
            prompt.last_hidden_state.clone().repeat_dim(0, rows),
            guided,
        )?;
        // The image tokens are always attended: the text mask padded with ones in front.
        let extra = self.text_proj.extra_tokens();
        let mask: Vec<f32> = std::iter::repeat_n(1.0, extra)
            .chain(
                prompt
                    .attention_mask
                    .iter()
                    .map(|&m| f32::from(u8::from(m))),
            )
            .collect();
        let tokens = mask.len();
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [1, tokens]), &device)
            .repeat_dim(0, rows);

        let timesteps = self
            .decoder_scheduler
            .timesteps_for(settings.decoder_steps)?;
        let c = self.decoder.in_channels();
        let s = self.decoder_size;
        // init_noise_sigma is 1.
        let mut latents = noise.normal([n, c, s, s], &device);
        for (i, &t) in timesteps.iter().enumerate() {
            let input = if guided {
                Tensor::cat(vec![latents.clone(), latents.clone()], 0)
            } else {
                latents.clone()
            };
            let pred = self.decoder.forward(
                input,
                &vec![t as f32; rows],
                projected.hidden_states.clone(),
                Some(projected.time_embeddings.clone()),
                Some(mask.clone()),
            )?;
            let pred = if guided {
                let out = pred.dims()[1];
                let uncond = pred.clone().slice([0..n, 0..c]);
                let text = pred.clone().slice([n..2 * n, 0..c]);
                let variance = pred.slice([n..2 * n, c..out]);
                let guided = uncond.clone() + (text - uncond) * settings.guidance_scale;
                Tensor::cat(vec![guided, variance], 1)
            } else {
                pred
            };
            let prev = timesteps.get(i + 1).copied();
            latents = self
                .decoder_scheduler
                .step(pred, t, latents, prev, noise)?
                .prev_sample;
        }
        let image_small = latents.clamp(-1.0, 1.0);

        let timesteps = self
            .super_res_scheduler
            .timesteps_for(settings.super_res_steps)?;
        let c = self.super_res_first.in_channels() / 2;
        let s = self.super_res_size;
        let mut latents = noise.normal([n, c, s, s], &device);
        let upscaled = resize_bicubic_antialias(image_small.clone(), [s, s]);
        for (i, &t) in timesteps.iter().enumerate() {
            let unet = if i + 1 == timesteps.len() {
                &self.super_res_last
            } else {
                &self.super_res_first
            };
            let input = Tensor::cat(vec![latents.clone(), upscaled.clone()], 1);
            let pred = unet.forward(input, &vec![t as f32; n])?;
            let prev = timesteps.get(i + 1).copied();
            latents = self
                .super_res_scheduler
                .step(pred, t, latents, prev, noise)?
                .prev_sample;
        }
        let image = (latents * 0.5 + 0.5).clamp(0.0, 1.0);
        Ok(Sampled { image_small, image })
    }
}
