//! diffusers' timestep features (`Timesteps`: sinusoids, cos first when `flip_sin_to_cos`) and
//! `TimestepEmbedding` (linear, SiLU, linear), as both UNets use them. Not here: Fourier or
//! learned time embeddings, the `cond_proj` and post-activation options (refused by the configs).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

/// `get_timestep_embedding` for one timestep per row, [rows, dim]. Computed on the host in f32
/// in torch's order (f32 exponent, f32 product, then sin/cos), so the arguments round as
/// torch's do: they reach ~1000 rad, where one f32 step is 6e-5.
pub fn timestep_features<B: Backend>(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f32,
    device: &B::Device,
) -> Tensor<B, 2> {
    let half = dim / 2;
    let log_period = -(10_000f64.ln() as f32);
    let freqs: Vec<f32> = (0..half)
        .map(|i| (log_period * i as f32 / (half as f32 - downscale_freq_shift)).exp())
        .collect();
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
        let sin = args.iter().map(|a| a.sin());
        let cos = args.iter().map(|a| a.cos());
        if flip_sin_to_cos {
            out.extend(cos.chain(sin));
        } else {
            out.extend(sin.chain(cos));
        }
        // An odd `dim` is zero-padded at the end, as diffusers does.
        out.extend(std::iter::repeat_n(0.0, dim - 2 * half));
    }
    Tensor::from_data(TensorData::new(out, [timesteps.len(), dim]), device)
}

/// `time_embedding.linear_1` / `linear_2`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding<B: Backend> {
    pub linear_1: Linear<B>,
    pub linear_2: Linear<B>,
}

impl<B: Backend> TimestepEmbedding<B> {
    pub fn new(input: usize, dim: usize, device: &B::Device) -> TimestepEmbedding<B> {
        TimestepEmbedding {
            linear_1: LinearConfig::new(input, dim).init(device),
            linear_2: LinearConfig::new(dim, dim).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}
