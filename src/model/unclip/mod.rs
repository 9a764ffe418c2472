//! Kakao Brain's Karlo unCLIP image-variation decoder, ported from diffusers
//! (`UnCLIPImageVariationPipeline`) to burn: a CLIP image embedding in, an image out.
//!
//! What is here: the text projection (`text_proj.rs`), the 64×64 decoder UNet
//! (`decoder.rs`, diffusers' `UNet2DConditionModel` with Karlo's block types), the two
//! super-resolution UNets (`super_res.rs`, `UNet2DModel`), the shared ResNet, added-KV attention
//! and block modules, the `UnCLIPScheduler` (`scheduler.rs`), torch's antialiased bicubic resize
//! (`resize.rs`), the sampling loop (`pipeline.rs`) and the loader for a diffusers pipeline
//! folder (`load.rs`; f16 or f32 weights, every tensor checked by name). Weight names are
//! diffusers' own, so a `diffusion_pytorch_model.safetensors` maps onto these modules with only
//! norm renames and Linear transposes.
//!
//! What is not: the prior (text → image embedding) and the CLIP image encoder of the folder (the
//! embedding comes from our own projector), prompts other than the empty one the image-variation
//! pipeline uses, and the many diffusers options Karlo does not use — each config refuses them
//! by name rather than ignore them.

pub mod attention;
pub mod blocks;
pub mod config;
pub mod decoder;
pub mod load;
pub mod pipeline;
pub mod resize;
pub mod resnet;
pub mod scheduler;
pub mod super_res;
pub mod text_proj;
pub mod time;

pub use config::ConfigError;
pub use decoder::{Decoder, DecoderConfig};
pub use load::{load_unclip, LoadError, LoadedUnclip};
pub use pipeline::{EmptyPrompt, PipelineError, SampleSettings, Sampled, Unclip};
pub use scheduler::{NoiseSource, SchedulerConfig, SeededNoise, UnclipScheduler};
pub use super_res::{SuperRes, SuperResConfig};
pub use text_proj::{TextProj, TextProjConfig};

/// A forward pass given inputs of the wrong shape (they come from callers and files, so they are
/// checked rather than left to panic inside burn).
#[derive(Debug, thiserror::Error)]
#[error("{model}: {message}")]
pub struct InputError {
    pub model: &'static str,
    pub message: String,
}

impl InputError {
    pub(crate) fn new(model: &'static str, message: String) -> InputError {
        InputError { model, message }
    }
}
