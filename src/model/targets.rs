//! BrainMCLIP's two targets from one CLIP vision pass: the *detail* target is the mean of the
//! hidden states of encoder blocks `first..=last` (1-based, class token + patch grid; 11-20 for
//! ViT-L/14's 24 blocks, configurable for smaller encoders), the *semantic* target the image
//! embedding (post-layernorm class token through the projection).

use burn::prelude::*;

use super::clip::{ClipVision, VisionOutput};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("detail layers {first}..={last}: expected 1 <= first <= last <= {blocks} (the encoder's blocks, 1-based)")]
    Layers {
        first: usize,
        last: usize,
        blocks: usize,
    },
    #[error("the encoder has no visual projection, so there is no image embedding for the semantic target")]
    NoProjection,
}

pub struct Targets<B: Backend> {
    /// [batch, tokens, hidden]
    pub detail: Tensor<B, 3>,
    /// [batch, projection]
    pub semantic: Tensor<B, 2>,
}

/// Both targets for a batch of preprocessed images.
pub fn targets<B: Backend>(
    model: &ClipVision<B>,
    pixels: Tensor<B, 4>,
    first: usize,
    last: usize,
) -> Result<Targets<B>, TargetError> {
    let blocks = model.vision_model.encoder.layers.len();
    if !(1 <= first && first <= last && last <= blocks) {
        return Err(TargetError::Layers {
            first,
            last,
            blocks,
        });
    }
    let out = model.forward(pixels, true);
    from_output(out, first, last)
}

/// The targets from a forward pass that kept its hidden states.
pub fn from_output<B: Backend>(
    out: VisionOutput<B>,
    first: usize,
    last: usize,
) -> Result<Targets<B>, TargetError> {
    let blocks = out.hidden_states.len().saturating_sub(1);
    if !(1 <= first && first <= last && last <= blocks) {
        return Err(TargetError::Layers {
            first,
            last,
            blocks,
        });
    }
    // hidden_states[i] is the output of block i.
    let n = (last - first + 1) as f64;
    let detail = out.hidden_states[first..=last]
        .iter()
        .cloned()
        .reduce(|a, b| a + b)
        .map(|s| s / n);
    let semantic = out.image_embeds.ok_or(TargetError::NoProjection)?;
    Ok(Targets {
        detail: detail.ok_or(TargetError::Layers {
            first,
            last,
            blocks,
        })?,
        semantic,
    })
}
