//! diffusers' `UnCLIPScheduler`: DDPM on the "squaredcos_cap_v2" schedule with Karlo's
//! timestep spacing and variances ("learned_range" from the model's extra channels, or
//! "fixed_small_log"), x₀ clipped. The variance noise comes from a caller's `NoiseSource`, so
//! tests can replay diffusers' exact draws. Not here: other beta schedules, `add_noise`.
//!
//! The scalars are computed in f32 in torch's order (the cumulative product with an f64
//! accumulator, as torch's CPU cumprod), so the coefficients equal diffusers' bit for bit.

use std::path::Path;

use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use serde::Deserialize;

use super::config::{
    check_class, check_fixed, from_value, invalid, read_value, ConfigError, Fixed,
};

/// `UnCLIPScheduler`'s `scheduler_config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    #[serde(default = "train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "small_log")]
    pub variance_type: String,
    #[serde(default = "yes")]
    pub clip_sample: bool,
    #[serde(default = "one")]
    pub clip_sample_range: f64,
    #[serde(default = "epsilon")]
    pub prediction_type: String,
}

fn train_steps() -> usize {
    1000
}
fn small_log() -> String {
    "fixed_small_log".into()
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn epsilon() -> String {
    "epsilon".into()
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            num_train_timesteps: train_steps(),
            variance_type: small_log(),
            clip_sample: true,
            clip_sample_range: 1.0,
            prediction_type: epsilon(),
        }
    }
}

/// diffusers itself refuses other schedules and types; so do we, naming the file.
const FIXED: [Fixed; 3] = [
    (
        "variance_type",
        "\"fixed_small_log\"",
        &["\"fixed_small_log\"", "\"learned_range\""],
    ),
    (
        "prediction_type",
        "\"epsilon\"",
        &["\"epsilon\"", "\"sample\""],
    ),
    (
        "beta_schedule",
        "\"squaredcos_cap_v2\"",
        &["\"squaredcos_cap_v2\""],
    ),
];

impl SchedulerConfig {
    pub fn from_file(path: &Path) -> Result<SchedulerConfig, ConfigError> {
        let json = read_value(path, "UnCLIPScheduler")?;
        check_class(path, &json, "UnCLIPScheduler")?;
        check_fixed(path, &json, &FIXED)?;
        let config: SchedulerConfig = from_value(path, "UnCLIPScheduler", json)?;
        if config.num_train_timesteps < 2 {
            return Err(invalid(
                path,
                "num_train_timesteps must be at least 2".into(),
            ));
        }
        Ok(config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("UnCLIPScheduler needs at least 2 inference steps (diffusers divides by steps - 1), got {0}")]
    TooFewSteps(usize),
    #[error("timestep {t} (previous {prev}) is outside 0..{train}")]
    Timestep { t: i64, prev: i64, train: usize },
    #[error("model output {output:?} does not fit the sample {sample:?}")]
    Shape {
        output: [usize; 4],
        sample: [usize; 4],
    },
}

/// Standard normal noise of a given shape, drawn in the order the sampler asks for it.
pub trait NoiseSource<B: Backend> {
    fn normal(&mut self, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4>;
}

/// Reproducible noise from a seed (ChaCha8 and rand_distr's standard normal); it cannot
/// reproduce torch's generator, which is why tests replay diffusers' draws instead.
pub struct SeededNoise(ChaCha8Rng);

impl SeededNoise {
    pub fn new(seed: u64) -> SeededNoise {
        SeededNoise(ChaCha8Rng::seed_from_u64(seed))
    }
}

impl<B: Backend> NoiseSource<B> for SeededNoise {
    fn normal(&mut self, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut self.0)).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnclipScheduler {
    pub config: SchedulerConfig,
    pub betas: Vec<f32>,
    pub alphas: Vec<f32>,
    pub alphas_cumprod: Vec<f32>,
    /// The inference timesteps, highest first.
    pub timesteps: Vec<i64>,
    learned_range: bool,
}

/// What one step gives.
#[derive(Debug, Clone)]
pub struct StepOutput<B: Backend> {
    pub prev_sample: Tensor<B, 4>,
    pub pred_original_sample: Tensor<B, 4>,
}

/// `betas_for_alpha_bar` with the cosine alpha-bar, in f64 as Python computes it, stored as f32.
fn cosine_betas(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

impl UnclipScheduler {
    /// `config` as checked by `SchedulerConfig::check`; timesteps start as all training steps.
    pub fn new(config: SchedulerConfig) -> UnclipScheduler {
        let betas = cosine_betas(config.num_train_timesteps);
        let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
        let mut acc = 1.0f64;
        let alphas_cumprod = alphas
            .iter()
            .map(|&a| {
                acc *= a as f64;
                acc as f32
            })
            .collect();
        let timesteps = (0..config.num_train_timesteps as i64).rev().collect();
        let learned_range = config.variance_type == "learned_range";
        UnclipScheduler {
            config,
            betas,
            alphas,
            alphas_cumprod,
            timesteps,
            learned_range,
        }
    }

    /// The timesteps `set_timesteps(steps)` would set: evenly spaced from the last training
    /// step to 0, rounded half to even as numpy rounds.
    pub fn timesteps_for(&self, steps: usize) -> Result<Vec<i64>, SchedulerError> {
        if steps < 2 {
            return Err(SchedulerError::TooFewSteps(steps));
        }
        let ratio = (self.config.num_train_timesteps - 1) as f64 / (steps - 1) as f64;
        Ok((0..steps)
            .rev()
            .map(|i| (i as f64 * ratio).round_ties_even() as i64)
            .collect())
    }

    pub fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.timesteps = self.timesteps_for(steps)?;
        Ok(())
    }

    /// One reverse step from `sample` at `t` to `prev_t` (default `t - 1`). With the learned
    /// variance the model output carries twice the sample's channels (prediction, then the
    /// variance interpolation). Draws noise from `noise` only when `t > 0`.
    pub fn step<B: Backend>(
        &self,
        model_output: Tensor<B, 4>,
        t: i64,
        sample: Tensor<B, 4>,
        prev_t: Option<i64>,
        noise: &mut dyn NoiseSource<B>,
    ) -> Result<StepOutput<B>, SchedulerError> {
        let prev = prev_t.unwrap_or(t - 1);
        let train = self.config.num_train_timesteps;
        if t < 0 || t as usize >= train || prev >= t || prev < -1 {
            return Err(SchedulerError::Timestep { t, prev, train });
        }
        let out_dims = model_output.dims();
        let dims = sample.dims();
        let [b, c, h, w] = dims;
        let shape_error = SchedulerError::Shape {
            output: out_dims,
            sample: dims,
        };
        if [out_dims[0], out_dims[2], out_dims[3]] != [b, h, w] {
            return Err(shape_error);
        }
        // The learned variance comes as extra channels; diffusers fails on any other pairing.
        let expected = if self.learned_range { 2 * c } else { c };
        if out_dims[1] != expected {
            return Err(shape_error);
        }
        let (model_output, predicted_variance) = if self.learned_range {
            (
                model_output.clone().slice([0..b, 0..c]),
                Some(model_output.slice([0..b, c..2 * c])),
            )
        } else {
            (model_output, None)
        };

        let alpha_prod_t = self.alphas_cumprod[t as usize];
        let alpha_prod_t_prev = if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else {
            1.0
        };
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let (beta, alpha) = if prev == t - 1 {
            (self.betas[t as usize], self.alphas[t as usize])
        } else {
            let beta = 1.0 - alpha_prod_t / alpha_prod_t_prev;
            (beta, 1.0 - beta)
        };

        let pred_original = if self.config.prediction_type == "sample" {
            model_output
        } else {
            (sample.clone() - model_output * beta_prod_t.sqrt()) / alpha_prod_t.sqrt()
        };
        let pred_original = if self.config.clip_sample {
            let r = self.config.clip_sample_range as f32;
            pred_original.clamp(-r, r)
        } else {
            pred_original
        };
        let original_coeff = (alpha_prod_t_prev.sqrt() * beta) / beta_prod_t;
        let current_coeff = alpha.sqrt() * beta_prod_t_prev / beta_prod_t;
        let mut prev_sample = pred_original.clone() * original_coeff + sample * current_coeff;

        if t > 0 {
            let z = noise.normal(dims, &prev_sample.device());
            let variance = beta_prod_t_prev / beta_prod_t * beta;
            let scaled = match predicted_variance {
                Some(v) => {
                    // Interpolate log-variances between the posterior's and beta's, by the
                    // model's (v + 1) / 2; then e^(v/2) is the standard deviation.
                    let (min_log, max_log) = (variance.ln(), beta.ln());
                    let frac = (v + 1.0) / 2.0;
                    let log_var = frac.clone() * max_log + (frac.neg() + 1.0) * min_log;
                    (log_var * 0.5).exp() * z
                }
                None => z * (0.5 * variance.max(1e-20).ln()).exp(),
            };
            prev_sample = prev_sample + scaled;
        }
        Ok(StepOutput {
            prev_sample,
            pred_original_sample: pred_original,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karlo_timesteps_and_schedule() {
        let s = UnclipScheduler::new(SchedulerConfig::default());
        assert_eq!(s.timesteps_for(4).unwrap(), vec![999, 666, 333, 0]);
        // 999 / 2 = 499.5 rounds to the even 500, as numpy does.
        assert_eq!(s.timesteps_for(3).unwrap(), vec![999, 500, 0]);
        assert!(s.timesteps_for(1).is_err());
        assert!((s.betas[0] - 4.128_422e-5).abs() < 1e-10, "{}", s.betas[0]);
        assert_eq!(s.betas[999], 0.999);
        assert!((s.betas[998] - 0.749_999_4).abs() < 1e-6);
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
    }
}
