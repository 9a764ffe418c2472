//! diffusers' `Attention` with `AttnAddedKVProcessor`, the attention of the Simple-cross-attention
//! blocks: the image (GroupNorm'd, as a sequence of pixels) queries the text tokens, projected by
//! `add_k_proj` / `add_v_proj`, *and* itself (`to_k` / `to_v`), one softmax over both; the
//! output projection is added back to the input. Not here: `only_cross_attention`,
//! `cross_attention_norm`, the plain self-attention of other UNets.
//!
//! Masking follows diffusers: the caller's additive bias over the text tokens (0 kept, -10000
//! dropped) is padded with zeros for the image's own tokens.

use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::resnet::group_norm;

/// The text side of cross-attention: tokens and the additive mask over them.
#[derive(Debug, Clone)]
pub struct CrossContext<B: Backend> {
    /// [b, tokens, cross_attention_dim]
    pub states: Tensor<B, 3>,
    /// [b, tokens]: 0 where a token is attended, -10000 where it is not.
    pub bias: Option<Tensor<B, 2>>,
}

#[derive(Module, Debug)]
pub struct AddedKvAttention<B: Backend> {
    pub group_norm: GroupNorm<B>,
    pub to_q: Linear<B>,
    pub to_k: Linear<B>,
    pub to_v: Linear<B>,
    pub add_k_proj: Linear<B>,
    pub add_v_proj: Linear<B>,
    /// diffusers' `to_out` is [Linear, Dropout]; only index 0 has weights.
    pub to_out: Vec<Linear<B>>,
    heads: usize,
}

impl<B: Backend> AddedKvAttention<B> {
    /// `channels` queries, `heads` of `head_dim`, text tokens of `context_dim`. The GroupNorm's
    /// epsilon is `Attention`'s default 1e-5, not the UNet's `norm_eps`.
    pub fn new(
        channels: usize,
        heads: usize,
        head_dim: usize,
        context_dim: usize,
        groups: usize,
        device: &B::Device,
    ) -> AddedKvAttention<B> {
        let inner = heads * head_dim;
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        AddedKvAttention {
            group_norm: group_norm(groups, channels, 1e-5, device),
            to_q: linear(channels, inner),
            to_k: linear(channels, inner),
            to_v: linear(channels, inner),
            add_k_proj: linear(context_dim, inner),
            add_v_proj: linear(context_dim, inner),
            to_out: vec![linear(inner, channels)],
            heads,
        }
    }

    /// `x`: [b, c, h, w]. Without a context the image attends to its own (un-normalised) pixels
    /// through the added projections too, as diffusers does when `encoder_hidden_states` is None.
    pub fn forward(&self, x: Tensor<B, 4>, context: Option<&CrossContext<B>>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let pixels = x.clone().reshape([b, c, n]);
        let (states, bias) = match context {
            Some(ctx) => (ctx.states.clone(), ctx.bias.clone()),
            None => (pixels.clone().swap_dims(1, 2), None),
        };
        let hs = self.group_norm.forward(pixels).swap_dims(1, 2); // [b, n, c]
        let inner = self.to_q.weight.dims()[1];
        let d = inner / self.heads;
        let split = |t: Tensor<B, 3>| {
            let [bb, s, _] = t.dims();
            t.reshape([bb, s, self.heads, d]).swap_dims(1, 2)
        };
        let q = split(self.to_q.forward(hs.clone()));
        let key = Tensor::cat(
            vec![
                split(self.add_k_proj.forward(states.clone())),
                split(self.to_k.forward(hs.clone())),
            ],
            2,
        );
        let value = Tensor::cat(
            vec![
                split(self.add_v_proj.forward(states)),
                split(self.to_v.forward(hs)),
            ],
            2,
        );
        let keys = key.dims()[2];
        let bias = bias.map(|text| {
            let [bb, t] = text.dims();
            let own = Tensor::zeros([bb, keys - t], &text.device());
            Tensor::cat(vec![text, own], 1)
                .reshape([bb, 1, 1, keys])
                .expand([bb, self.heads, n, keys])
        });
        let out = attention(q, key, value, None, bias, AttentionModuleOptions::default());
        let out = out.swap_dims(1, 2).reshape([b, n, inner]);
        let out = match self.to_out.first() {
            Some(proj) => proj.forward(out),
            None => out,
        };
        out.swap_dims(1, 2).reshape([b, c, h, w]) + x
    }
}
