//! The conditional UNet: residual blocks (GroupNorm, SiLU, 3×3 convolutions) whose second norm
//! is modulated (scale, shift) by the timestep + semantic embedding; the detail tokens' patch
//! grid, 1×1-projected and resized, added at the start of every level on the way down and up;
//! self-attention at the lowest resolution; v-prediction output.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::{attention, interpolate};
use burn::tensor::ops::{AttentionModuleOptions, InterpolateMode, InterpolateOptions};

use super::{Condition, GeneratorConfig};

fn conv<B: Backend>(i: usize, o: usize, k: usize, stride: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([i, o], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

fn norm<B: Backend>(groups: usize, c: usize, device: &B::Device) -> GroupNorm<B> {
    GroupNormConfig::new(groups.min(c), c).init(device)
}

#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv2d<B>,
    modulation: Linear<B>,
    norm2: GroupNorm<B>,
    conv2: Conv2d<B>,
    skip: Option<Conv2d<B>>,
}

impl<B: Backend> ResBlock<B> {
    fn new(i: usize, o: usize, embed: usize, groups: usize, device: &B::Device) -> Self {
        ResBlock {
            norm1: norm(groups, i, device),
            conv1: conv(i, o, 3, 1, device),
            modulation: LinearConfig::new(embed, 2 * o).init(device),
            norm2: norm(groups, o, device),
            conv2: conv(o, o, 3, 1, device),
            skip: (i != o).then(|| conv(i, o, 1, 1, device)),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, emb: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let [b, c, _, _] = h.dims();
        let m = self.modulation.forward(silu(emb)).reshape([b, 2 * c, 1, 1]);
        let scale = m.clone().slice([0..b, 0..c, 0..1, 0..1]);
        let shift = m.slice([0..b, c..2 * c, 0..1, 0..1]);
        let h = self.norm2.forward(h) * (scale + 1.0) + shift;
        let h = self.conv2.forward(silu(h));
        let x = match &self.skip {
            Some(s) => s.forward(x),
            None => x,
        };
        x + h
    }
}

#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    norm: GroupNorm<B>,
    qkv: Conv2d<B>,
    out: Conv2d<B>,
    heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let qkv = self.qkv.forward(self.norm.forward(x.clone())); // [b, 3c, h, w]
        let d = c / self.heads;
        let part = |k: usize| {
            qkv.clone()
                .slice([0..b, k * c..(k + 1) * c, 0..h, 0..w])
                .reshape([b, self.heads, d, h * w])
                .swap_dims(2, 3)
        };
        let y = attention(
            part(0),
            part(1),
            part(2),
            None,
            None,
            AttentionModuleOptions::default(),
        );
        let y = y.swap_dims(2, 3).reshape([b, c, h, w]);
        x + self.out.forward(y)
    }
}

#[derive(Module, Debug)]
pub struct Level<B: Backend> {
    blocks: Vec<ResBlock<B>>,
    /// 1×1 projection of the token grid to this level's channels (none for an
    /// embedding-only generator).
    tokens: Option<Conv2d<B>>,
}

#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    input: Conv2d<B>,
    time1: Linear<B>,
    time2: Linear<B>,
    semantic_norm: LayerNorm<B>,
    semantic: Linear<B>,
    token_norm: Option<LayerNorm<B>>,
    down: Vec<Level<B>>,
    downsample: Vec<Conv2d<B>>,
    middle1: ResBlock<B>,
    middle_attention: Option<SelfAttention<B>>,
    middle2: ResBlock<B>,
    up: Vec<Level<B>>,
    upsample: Vec<Conv2d<B>>,
    out_norm: GroupNorm<B>,
    output: Conv2d<B>,
    unshuffle: usize,
    grid: usize,
    embed_dim: usize,
}

pub(super) fn build<B: Backend>(c: &GeneratorConfig, device: &B::Device) -> UNet<B> {
    let pixels = 3 * c.unshuffle * c.unshuffle;
    let e = c.embed_dim;
    let ch = &c.channels;
    let top = ch[0];
    let level = |i: usize, o: usize, n: usize| Level {
        blocks: (0..n)
            .map(|k| ResBlock::new(if k == 0 { i } else { o }, o, e, c.groups, device))
            .collect(),
        tokens: c
            .detail_tokens
            .then(|| conv(c.token_width, i, 1, 1, device)),
    };
    let down: Vec<Level<B>> = (0..ch.len())
        .map(|l| level(if l == 0 { top } else { ch[l - 1] }, ch[l], c.blocks))
        .collect();
    let downsample = (1..ch.len())
        .map(|l| conv(ch[l - 1], ch[l - 1], 3, 2, device))
        .collect();
    let bottom = *ch.last().unwrap_or(&top);
    // Up levels take the concatenated skip (their own channels twice).
    let up: Vec<Level<B>> = (0..ch.len())
        .rev()
        .map(|l| {
            let from = if l + 1 == ch.len() { bottom } else { ch[l + 1] };
            level(from + ch[l], ch[l], c.blocks)
        })
        .collect();
    let upsample = (1..ch.len())
        .rev()
        .map(|l| conv(ch[l], ch[l], 3, 1, device))
        .collect();
    UNet {
        input: conv(pixels, top, 3, 1, device),
        time1: LinearConfig::new(e, e).init(device),
        time2: LinearConfig::new(e, e).init(device),
        semantic_norm: LayerNormConfig::new(c.semantic_dim).init(device),
        semantic: LinearConfig::new(c.semantic_dim, e).init(device),
        token_norm: c
            .detail_tokens
            .then(|| LayerNormConfig::new(c.token_width).init(device)),
        down,
        downsample,
        middle1: ResBlock::new(bottom, bottom, e, c.groups, device),
        middle_attention: c.attention.then(|| SelfAttention {
            norm: norm(c.groups, bottom, device),
            qkv: conv(bottom, 3 * bottom, 1, 1, device),
            out: conv(bottom, bottom, 1, 1, device),
            heads: 4.min(bottom),
        }),
        middle2: ResBlock::new(bottom, bottom, e, c.groups, device),
        up,
        upsample,
        out_norm: norm(c.groups, top, device),
        output: conv(top, pixels, 3, 1, device),
        unshuffle: c.unshuffle,
        grid: c.token_grid,
        embed_dim: e,
    }
}

/// Rows of the 1-D bilinear resampling matrix [out, in] with PyTorch's `align_corners = false`
/// (source position `(i + 0.5)·in/out - 0.5`, clamped to the edges).
fn bilinear_weights(n_in: usize, n_out: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for i in 0..n_out {
        let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let frac = (src - i0 as f64) as f32;
        m[i * n_in + i0] += 1.0 - frac;
        m[i * n_in + i1] += frac;
    }
    m
}

/// Bilinear resize of [b, c, h, w] to `size` (align_corners = false, no antialiasing), as two
/// matrix products: the same values as burn's `interpolate` in bilinear mode, with a backward
/// pass on every backend (the CUDA backend has none for bilinear `interpolate`).
pub fn resize_bilinear<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let [ho, wo] = size;
    if [h, w] == size {
        return x;
    }
    let device = x.device();
    let matrix = |n_in: usize, n_out: usize| {
        // [in, out]: the transpose of the resampling matrix, for `rows · matrix`. Transposed
        // here on the host, not with `.transpose()`: on burn 0.21's wgpu backend a matmul of a
        // reshaped transposed-view left operand with a transposed-view right one gives wrong
        // numbers (tests/wgpu_agreement.rs), and this was the generator's wgpu disagreement.
        let rows = bilinear_weights(n_in, n_out);
        let mut columns = vec![0.0f32; rows.len()];
        for o in 0..n_out {
            for i in 0..n_in {
                columns[i * n_out + o] = rows[o * n_in + i];
            }
        }
        Tensor::<B, 2>::from_data(TensorData::new(columns, [n_in, n_out]), &device)
    };
    let across = x.reshape([b * c * h, w]).matmul(matrix(w, wo)); // [b·c·h, wo]
    let down = across
        .reshape([b * c, h, wo])
        .swap_dims(1, 2)
        .reshape([b * c * wo, h])
        .matmul(matrix(h, ho)); // [b·c·wo, ho]
    down.reshape([b * c, wo, ho])
        .swap_dims(1, 2)
        .reshape([b, c, ho, wo])
}

/// [b, 3, s, s] → [b, 3·f², s/f, s/f].
pub fn pixel_unshuffle<B: Backend>(x: Tensor<B, 4>, f: usize) -> Tensor<B, 4> {
    if f == 1 {
        return x;
    }
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h / f, f, w / f, f])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([b, c * f * f, h / f, w / f])
}

/// The inverse of `pixel_unshuffle`.
pub fn pixel_shuffle<B: Backend>(x: Tensor<B, 4>, f: usize) -> Tensor<B, 4> {
    if f == 1 {
        return x;
    }
    let [b, cff, h, w] = x.dims();
    let c = cff / (f * f);
    x.reshape([b, c, f, f, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([b, c, h * f, w * f])
}

fn timestep_embedding<B: Backend>(t: Tensor<B, 1>, dim: usize) -> Tensor<B, 2> {
    let [b] = t.dims();
    let half = dim / 2;
    let device = t.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f32.ln()) * i as f32 / half as f32).exp() * 1000.0)
        .collect();
    let freqs =
        Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device).reshape([1, half]);
    let args = t.reshape([b, 1]) * freqs;
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}

impl<B: Backend> UNet<B> {
    /// The token grid as a feature map [b, width, grid, grid] (class token dropped); None for
    /// an embedding-only generator.
    fn token_map(&self, tokens: Tensor<B, 3>) -> Option<Tensor<B, 4>> {
        let norm = self.token_norm.as_ref()?;
        let [b, t, c] = tokens.dims();
        let g = self.grid;
        let grid = norm.forward(tokens).slice([0..b, t - g * g..t, 0..c]);
        Some(grid.swap_dims(1, 2).reshape([b, c, g, g]))
    }

    fn inject(
        &self,
        level: &Level<B>,
        h: Tensor<B, 4>,
        map: &Option<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let (Some(map), Some(tokens)) = (map, &level.tokens) else {
            return h;
        };
        let [_, _, hh, ww] = h.dims();
        h + resize_bilinear(tokens.forward(map.clone()), [hh, ww])
    }

    /// Predicts v for noisy images `x` `[b, 3, s, s]` at times `t` `[b]` in 0..1.
    pub fn forward(&self, x: Tensor<B, 4>, t: Tensor<B, 1>, cond: &Condition<B>) -> Tensor<B, 4> {
        let emb = self.time2.forward(silu(
            self.time1.forward(timestep_embedding(t, self.embed_dim)),
        )) + self
            .semantic
            .forward(self.semantic_norm.forward(cond.semantic.clone()));
        let map = self.token_map(cond.tokens.clone());
        let mut h = self.input.forward(pixel_unshuffle(x, self.unshuffle));
        let mut skips = Vec::new();
        for (l, level) in self.down.iter().enumerate() {
            h = self.inject(level, h, &map);
            for block in &level.blocks {
                h = block.forward(h, emb.clone());
            }
            skips.push(h.clone());
            if let Some(down) = self.downsample.get(l) {
                h = down.forward(h);
            }
        }
        h = self.middle1.forward(h, emb.clone());
        if let Some(a) = &self.middle_attention {
            h = a.forward(h);
        }
        h = self.middle2.forward(h, emb.clone());
        for (k, level) in self.up.iter().enumerate() {
            let skip = skips.pop().unwrap_or_else(|| h.clone());
            let [_, _, sh, sw] = skip.dims();
            let [_, _, hh, _] = h.dims();
            if hh != sh {
                h = interpolate(
                    h,
                    [sh, sw],
                    InterpolateOptions::new(InterpolateMode::Nearest),
                );
                if let Some(up) = self.upsample.get(k - 1) {
                    h = up.forward(h);
                }
            }
            h = Tensor::cat(vec![h, skip], 1);
            h = self.inject(level, h, &map);
            for block in &level.blocks {
                h = block.forward(h, emb.clone());
            }
        }
        let out = self.output.forward(silu(self.out_norm.forward(h)));
        pixel_shuffle(out, self.unshuffle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::flex::FlexDevice;
    use burn::backend::Flex;

    #[test]
    fn pixel_shuffle_inverts_unshuffle_and_groups_2x2_blocks() {
        let values: Vec<f32> = (0..2 * 3 * 4 * 4).map(|v| v as f32).collect();
        let x = Tensor::<Flex, 4>::from_data(
            TensorData::new(values.clone(), [2, 3, 4, 4]),
            &FlexDevice,
        );
        let u = pixel_unshuffle(x, 2);
        assert_eq!(u.dims(), [2, 12, 2, 2]);
        // Channel 0 of the unshuffled image is the top-left pixel of each 2×2 block of channel 0.
        let u0: Vec<f32> = u
            .clone()
            .slice([0..1, 0..1, 0..2, 0..2])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(u0, vec![0.0, 2.0, 8.0, 10.0]);
        let back: Vec<f32> = pixel_shuffle(u, 2).into_data().to_vec().unwrap();
        assert_eq!(back, values);
    }

    #[test]
    fn matrix_bilinear_resize_equals_burns_interpolate() {
        let values: Vec<f32> = (0..2 * 3 * 8 * 8)
            .map(|v| ((v * 37) % 101) as f32 / 10.0)
            .collect();
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(values, [2, 3, 8, 8]), &FlexDevice);
        for size in [[16, 16], [32, 32], [64, 64], [4, 4], [8, 8], [12, 20]] {
            let ours: Vec<f32> = resize_bilinear(x.clone(), size)
                .into_data()
                .to_vec()
                .unwrap();
            let burn: Vec<f32> = interpolate(
                x.clone(),
                size,
                InterpolateOptions {
                    mode: InterpolateMode::Bilinear,
                    align_corners: false,
                },
            )
            .into_data()
            .to_vec()
            .unwrap();
            let worst = ours
                .iter()
                .zip(&burn)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{size:?}: {worst}");
        }
    }

    #[test]
    fn demo_config_predicts_an_image_sized_output() {
        let config = GeneratorConfig {
            image_size: 16,
            ..GeneratorConfig::demo(24, 4, 10)
        };
        let model = config.init::<Flex>(&FlexDevice);
        let cond = Condition {
            tokens: Tensor::ones([2, 17, 24], &FlexDevice),
            semantic: Tensor::ones([2, 10], &FlexDevice),
        };
        let out = model.forward(
            Tensor::zeros([2, 3, 16, 16], &FlexDevice),
            Tensor::from_data(TensorData::new(vec![0.3f32, 0.9], [2]), &FlexDevice),
            &cond,
        );
        assert_eq!(out.dims(), [2, 3, 16, 16]);
    }

    #[test]
    fn the_output_does_not_depend_on_the_embeddings_or_tokens_scale() {
        // Both conditions enter through a LayerNorm, so a prediction 2x too long (the
        // projector's cosine losses leave its scale free) draws the same image: a magnitude
        // loss or a fitted scale cannot change what this generator draws.
        let model = GeneratorConfig {
            image_size: 16,
            ..GeneratorConfig::demo(24, 4, 10)
        }
        .init::<Flex>(&FlexDevice);
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let x = Tensor::<Flex, 4>::random([2, 3, 16, 16], normal, &FlexDevice);
        let t = Tensor::from_data(TensorData::new(vec![0.2f32, 0.7], [2]), &FlexDevice);
        let cond = Condition {
            tokens: Tensor::<Flex, 3>::random([2, 17, 24], normal, &FlexDevice),
            semantic: Tensor::<Flex, 2>::random([2, 10], normal, &FlexDevice),
        };
        let scaled = Condition {
            tokens: cond.tokens.clone() * 2.0,
            semantic: cond.semantic.clone() * 2.3,
        };
        let a = model.forward(x.clone(), t.clone(), &cond);
        let b = model.forward(x, t, &scaled);
        let worst = (a.clone() - b).abs().max().into_scalar();
        assert!(worst < 1e-4, "{worst}");
        assert!(a.abs().max().into_scalar() > 1e-2);
    }

    #[test]
    fn an_embedding_only_generator_ignores_the_tokens_and_has_no_token_weights() {
        use burn::module::Module;
        let with = GeneratorConfig {
            image_size: 16,
            ..GeneratorConfig::demo(24, 4, 10)
        };
        let without = GeneratorConfig {
            detail_tokens: false,
            ..with.clone()
        };
        let x = Tensor::<Flex, 4>::random(
            [1, 3, 16, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &FlexDevice,
        );
        let t = Tensor::from_data(TensorData::new(vec![0.5f32], [1]), &FlexDevice);
        let cond = |v: f32| Condition {
            tokens: Tensor::<Flex, 3>::random(
                [1, 17, 24],
                burn::tensor::Distribution::Normal(0.0, v as f64),
                &FlexDevice,
            ),
            semantic: Tensor::ones([1, 10], &FlexDevice),
        };
        let spread = |model: &UNet<Flex>| {
            let a = model.forward(x.clone(), t.clone(), &cond(1.0));
            let b = model.forward(x.clone(), t.clone(), &cond(3.0));
            (a - b).abs().max().into_scalar()
        };
        let (full, plain) = (
            with.init::<Flex>(&FlexDevice),
            without.init::<Flex>(&FlexDevice),
        );
        assert!(spread(&full) > 1e-3, "tokens must matter with them");
        assert_eq!(spread(&plain), 0.0, "tokens must not matter without them");
        // Each level's 1x1 token projection (24 -> its input channels, + bias) and the token
        // LayerNorm (2 x 24) are absent.
        // Down levels take 32, 32, 64 channels; up levels 128+128, 128+64, 64+32.
        let inputs: usize = [32, 32, 64, 256, 192, 96].iter().sum();
        let expected = inputs * 24 + inputs + 2 * 24;
        assert_eq!(full.num_params() - plain.num_params(), expected);
    }
}
