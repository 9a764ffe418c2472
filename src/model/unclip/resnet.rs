//! diffusers' `ResnetBlock2D` as both unCLIP UNets use it: GroupNorm, SiLU, 3×3 convolution,
//! the time embedding added ("default") or applied as scale and shift after the second norm
//! ("scale_shift"), a 1×1 shortcut when the channels change, and optionally a resampling inside
//! the block (`up`: nearest ×2; `down`: 2×2 average pooling) applied to both branches after the
//! first activation. Not here: FIR kernels, spatial / ada-group norms, `conv_shortcut = True`.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::avg_pool2d;

/// How a block's ResNets are built (from the UNet's config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResnetSettings {
    pub groups: usize,
    pub eps: f64,
    pub temb: usize,
    pub scale_shift: bool,
    pub skip_time_act: bool,
    pub output_scale_factor: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    None,
    Up,
    Down,
}

pub(crate) fn conv<B: Backend>(i: usize, o: usize, k: usize, device: &B::Device) -> Conv2d<B> {
    let p = (k - 1) / 2;
    Conv2dConfig::new([i, o], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device)
}

pub(crate) fn group_norm<B: Backend>(
    groups: usize,
    channels: usize,
    eps: f64,
    device: &B::Device,
) -> GroupNorm<B> {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(eps)
        .init(device)
}

/// Nearest-neighbour ×2 (torch's `interpolate(scale_factor=2, mode="nearest")`), exactly, as a
/// broadcast copy.
pub fn upsample_nearest2x<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w])
}

#[derive(Module, Debug)]
pub struct ResnetBlock2D<B: Backend> {
    pub norm1: GroupNorm<B>,
    pub conv1: Conv2d<B>,
    pub time_emb_proj: Linear<B>,
    pub norm2: GroupNorm<B>,
    pub conv2: Conv2d<B>,
    pub conv_shortcut: Option<Conv2d<B>>,
    scale_shift: bool,
    skip_time_act: bool,
    output_scale_factor: f32,
    /// 0 none, 1 up, 2 down (a plain number: module fields must be burn constants).
    resample: u8,
}

impl<B: Backend> ResnetBlock2D<B> {
    pub fn new(
        i: usize,
        o: usize,
        s: &ResnetSettings,
        resample: Resample,
        device: &B::Device,
    ) -> ResnetBlock2D<B> {
        let proj = if s.scale_shift { 2 * o } else { o };
        ResnetBlock2D {
            norm1: group_norm(s.groups, i, s.eps, device),
            conv1: conv(i, o, 3, device),
            time_emb_proj: LinearConfig::new(s.temb, proj).init(device),
            norm2: group_norm(s.groups, o, s.eps, device),
            conv2: conv(o, o, 3, device),
            conv_shortcut: (i != o).then(|| conv(i, o, 1, device)),
            scale_shift: s.scale_shift,
            skip_time_act: s.skip_time_act,
            output_scale_factor: s.output_scale_factor,
            resample: match resample {
                Resample::None => 0,
                Resample::Up => 1,
                Resample::Down => 2,
            },
        }
    }

    fn resample(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self.resample {
            1 => upsample_nearest2x(x),
            2 => avg_pool2d(x, [2, 2], [2, 2], [0, 0], true, false),
            _ => x,
        }
    }

    /// `x`: [b, c, h, w]; `temb`: [b, time_embed_dim].
    pub fn forward(&self, x: Tensor<B, 4>, temb: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = silu(self.norm1.forward(x.clone()));
        let (x, h) = (self.resample(x), self.resample(h));
        let h = self.conv1.forward(h);
        let temb = if self.skip_time_act { temb } else { silu(temb) };
        let t = self.time_emb_proj.forward(temb);
        let [b, n] = t.dims();
        let t = t.reshape([b, n, 1, 1]);
        let h = if self.scale_shift {
            let c = n / 2;
            let scale = t.clone().slice([0..b, 0..c]);
            let shift = t.slice([0..b, c..n]);
            self.norm2.forward(h) * (scale + 1.0) + shift
        } else {
            self.norm2.forward(h + t)
        };
        let h = self.conv2.forward(silu(h));
        let x = match &self.conv_shortcut {
            Some(s) => s.forward(x),
            None => x,
        };
        let out = x + h;
        if self.output_scale_factor == 1.0 {
            out
        } else {
            out / self.output_scale_factor
        }
    }
}
