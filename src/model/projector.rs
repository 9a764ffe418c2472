//! The BrainMCLIP projector: two streams from voxels to CLIP's feature hierarchy.
//!
//! Detail: all visual voxels `F_D` → encoder → brain embedding `b_D` → a factorised low-rank
//! head predicting the detail target tokens (CLIP's intermediate layers: class + patch grid).
//! Semantic: high-level voxels `F_S` → encoder → `b_S` → a head predicting the image embedding
//! (CLIP's final layer). Decoders `Dec_D: b → F_D` and `Dec_S: b → F_S` take either stream's
//! embedding, which is what cross-reconstruction needs. Losses are in `loss.rs`, training in
//! `train/calibrate.rs`.
//!
//! Encoder: a linear map (its weight L2-penalised by the loss) then residual MLP blocks
//! (LayerNorm, Linear, GELU, Dropout). Detail head: `tokens[t, c] = Σ_r mix[t, r] basis_r(b)[c]
//! plus bias[t, c]`, where `basis` is one Linear(E → R·C) and `mix` a learned [T, R] matrix,
//! so the head costs E·R·C + T·R + T·C parameters instead of a dense E·T·C.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use serde::{Deserialize, Serialize};

/// Saved beside the weights as JSON; also fixes the voxel counts a calibration expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectorConfig {
    pub detail_voxels: usize,
    pub semantic_voxels: usize,
    /// Width of both brain embeddings.
    pub embed_dim: usize,
    /// Residual MLP blocks per encoder.
    pub blocks: usize,
    pub dropout: f64,
    /// Detail target: tokens (class + patches) and their width.
    pub detail_tokens: usize,
    pub detail_width: usize,
    /// Rank of the factorised detail head.
    pub token_rank: usize,
    /// Semantic target width (the image embedding).
    pub semantic_dim: usize,
}

impl ProjectorConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Projector<B> {
        let e = self.embed_dim;
        let (t, c, r) = (self.detail_tokens, self.detail_width, self.token_rank);
        Projector {
            detail_encoder: StreamEncoderConfig::new(
                self.detail_voxels,
                e,
                self.blocks,
                self.dropout,
            )
            .init(device),
            semantic_encoder: StreamEncoderConfig::new(
                self.semantic_voxels,
                e,
                self.blocks,
                self.dropout,
            )
            .init(device),
            detail_head: TokenHead {
                basis: LinearConfig::new(e, r * c).init(device),
                // Small random mixing so each token starts as a distinct combination.
                mix: Param::from_tensor(Tensor::random(
                    [t, r],
                    burn::tensor::Distribution::Normal(0.0, (1.0 / r as f64).sqrt()),
                    device,
                )),
                bias: Param::from_tensor(Tensor::zeros([t, c], device)),
                rank: r,
            },
            semantic_head: LinearConfig::new(e, self.semantic_dim).init(device),
            detail_decoder: LinearConfig::new(e, self.detail_voxels).init(device),
            semantic_decoder: LinearConfig::new(e, self.semantic_voxels).init(device),
        }
    }
}

#[derive(Config, Debug)]
pub struct StreamEncoderConfig {
    pub inputs: usize,
    pub width: usize,
    pub blocks: usize,
    pub dropout: f64,
}

impl StreamEncoderConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> StreamEncoder<B> {
        StreamEncoder {
            input: LinearConfig::new(self.inputs, self.width).init(device),
            blocks: (0..self.blocks)
                .map(|_| ResidualBlock {
                    norm: LayerNormConfig::new(self.width).init(device),
                    linear: LinearConfig::new(self.width, self.width).init(device),
                    dropout: DropoutConfig::new(self.dropout).init(),
                })
                .collect(),
            input_dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    pub norm: LayerNorm<B>,
    pub linear: Linear<B>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct StreamEncoder<B: Backend> {
    /// The linear map whose weight the loss penalises (L2).
    pub input: Linear<B>,
    pub blocks: Vec<ResidualBlock<B>>,
    pub input_dropout: Dropout,
}

impl<B: Backend> StreamEncoder<B> {
    /// [batch, voxels] → [batch, width].
    pub fn forward(&self, voxels: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut x = self.input.forward(self.input_dropout.forward(voxels));
        for block in &self.blocks {
            let y = block
                .dropout
                .forward(gelu(block.linear.forward(block.norm.forward(x.clone()))));
            x = x + y;
        }
        x
    }
}

#[derive(Module, Debug)]
pub struct TokenHead<B: Backend> {
    pub basis: Linear<B>,
    pub mix: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 2>>,
    pub rank: usize,
}

impl<B: Backend> TokenHead<B> {
    /// [batch, E] → [batch, tokens, width].
    pub fn forward(&self, b: Tensor<B, 2>) -> Tensor<B, 3> {
        let [n, _] = b.dims();
        let [t, c] = self.bias.dims();
        let basis = self.basis.forward(b).reshape([n, self.rank, c]);
        let mix = self.mix.val().unsqueeze::<3>().repeat_dim(0, n); // [n, t, r]
        mix.matmul(basis) + self.bias.val().unsqueeze::<3>().reshape([1, t, c])
    }
}

#[derive(Module, Debug)]
pub struct Projector<B: Backend> {
    pub detail_encoder: StreamEncoder<B>,
    pub semantic_encoder: StreamEncoder<B>,
    pub detail_head: TokenHead<B>,
    pub semantic_head: Linear<B>,
    pub detail_decoder: Linear<B>,
    pub semantic_decoder: Linear<B>,
}

/// Everything one forward pass gives the losses and the live path.
pub struct ProjectorOutput<B: Backend> {
    pub b_detail: Tensor<B, 2>,
    pub b_semantic: Tensor<B, 2>,
    /// Predicted detail tokens [batch, tokens, width] (in normalised target units).
    pub detail_tokens: Tensor<B, 3>,
    /// Predicted image embedding [batch, dim] (normalised target units).
    pub semantic: Tensor<B, 2>,
}

impl<B: Backend> Projector<B> {
    pub fn forward(&self, detail: Tensor<B, 2>, semantic: Tensor<B, 2>) -> ProjectorOutput<B> {
        let b_detail = self.detail_encoder.forward(detail);
        let b_semantic = self.semantic_encoder.forward(semantic);
        ProjectorOutput {
            detail_tokens: self.detail_head.forward(b_detail.clone()),
            semantic: self.semantic_head.forward(b_semantic.clone()),
            b_detail,
            b_semantic,
        }
    }

    /// Parameter counts of every part, in order, then the total.
    pub fn parameter_counts(&self) -> Vec<(&'static str, usize)> {
        let parts = vec![
            ("detail encoder", self.detail_encoder.num_params()),
            ("semantic encoder", self.semantic_encoder.num_params()),
            ("detail head (low-rank)", self.detail_head.num_params()),
            ("semantic head", self.semantic_head.num_params()),
            ("detail decoder", self.detail_decoder.num_params()),
            ("semantic decoder", self.semantic_decoder.num_params()),
        ];
        let total = parts.iter().map(|p| p.1).sum();
        let mut all = parts;
        all.push(("total", total));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::flex::FlexDevice;
    use burn::backend::Flex;

    #[test]
    fn shapes_and_the_low_rank_head_is_small() {
        let config = ProjectorConfig {
            detail_voxels: 50,
            semantic_voxels: 20,
            embed_dim: 16,
            blocks: 2,
            dropout: 0.0,
            detail_tokens: 65,
            detail_width: 32,
            token_rank: 4,
            semantic_dim: 8,
        };
        let model = config.init::<Flex>(&FlexDevice);
        let out = model.forward(
            Tensor::zeros([3, 50], &FlexDevice),
            Tensor::zeros([3, 20], &FlexDevice),
        );
        assert_eq!(out.detail_tokens.dims(), [3, 65, 32]);
        assert_eq!(out.semantic.dims(), [3, 8]);
        assert_eq!(out.b_detail.dims(), [3, 16]);
        let counts = model.parameter_counts();
        let head = counts
            .iter()
            .find(|c| c.0.starts_with("detail head"))
            .expect("head")
            .1;
        assert_eq!(head, 16 * 4 * 32 + 4 * 32 + 65 * 4 + 65 * 32);
        assert!(
            head < 16 * 65 * 32,
            "the factorised head must be smaller than a dense one"
        );
        assert_eq!(counts.last().expect("total").1, model.num_params());
    }
}
