//! The VAE-free few-step diffusion decoder: a pixel-space conditional UNet (`unet.rs`) turns
//! CLIP features into an image — the semantic embedding (with the timestep) through adaptive
//! normalisation, the detail tokens as a spatial grid added at every resolution — sampled with
//! a cosine schedule, v-prediction and DDIM in a handful of steps (`schedule.rs`).
//!
//! The UNet works on pixel-unshuffled images (`unshuffle` 2: a 64×64×3 image is a 32×32×12
//! tensor), which keeps full-resolution output at a quarter of the convolution cost. A trained
//! one is read and written by `files.rs`.

pub mod files;
pub mod schedule;
pub mod unet;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use unet::UNet;

/// Saved beside the weights as `generator.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Output image side, pixels.
    pub image_size: usize,
    /// Pixel-unshuffle factor in front of the UNet (1 = none).
    pub unshuffle: usize,
    /// Channels of each UNet level, from the top.
    pub channels: Vec<usize>,
    /// Residual blocks per level.
    pub blocks: usize,
    /// Self-attention at the lowest resolution.
    pub attention: bool,
    pub groups: usize,
    /// Conditioning: detail tokens (class + grid²) of this width, semantic embedding of this size.
    pub token_width: usize,
    pub token_grid: usize,
    pub semantic_dim: usize,
    /// Width of the timestep + semantic embedding.
    pub embed_dim: usize,
    /// Whether the detail tokens condition the UNet. False: the semantic embedding alone (what
    /// decoders aligned only with CLIP's final embedding use; the comparison in `eval --images`).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub detail_tokens: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(v: &bool) -> bool {
    *v
}

impl GeneratorConfig {
    /// The demo's: 64×64 output, unshuffled to 32×32, three levels.
    pub fn demo(token_width: usize, token_grid: usize, semantic_dim: usize) -> GeneratorConfig {
        GeneratorConfig {
            image_size: 64,
            unshuffle: 2,
            channels: vec![32, 64, 128],
            blocks: 1,
            attention: true,
            groups: 8,
            token_width,
            token_grid,
            semantic_dim,
            embed_dim: 128,
            detail_tokens: true,
        }
    }

    /// A real-size configuration: ViT-L/14 conditioning (16×16 grid of 1024, 768-d embedding),
    /// 256×256 output.
    pub fn real_size() -> GeneratorConfig {
        GeneratorConfig {
            image_size: 256,
            unshuffle: 2,
            channels: vec![128, 256, 384, 512],
            blocks: 2,
            attention: true,
            groups: 32,
            token_width: 1024,
            token_grid: 16,
            semantic_dim: 768,
            embed_dim: 512,
            detail_tokens: true,
        }
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        unet::build(self, device)
    }
}

/// What the generator is conditioned on (CLIP units, one row per image).
#[derive(Debug, Clone)]
pub struct Condition<B: Backend> {
    /// [batch, 1 + grid², width]
    pub tokens: Tensor<B, 3>,
    /// [batch, dim]
    pub semantic: Tensor<B, 2>,
}

impl<B: Backend> Condition<B> {
    /// The "no condition" used by classifier-free guidance: zeros.
    pub fn null_like(&self) -> Condition<B> {
        Condition {
            tokens: self.tokens.zeros_like(),
            semantic: self.semantic.zeros_like(),
        }
    }
}
