//! Brain-like degradation of CLIP conditions. What a projector trained on a few hundred noisy
//! trials predicts is not the true features plus white noise: it is shrunk toward the mean of
//! the features (regression to the mean), partly another image's features (the confusions that
//! 2-way identification counts) and noisy. A generator that has only seen true features, or
//! true features plus white noise, meets such conditions far from its training data and paints
//! grain. The generator is trained on these conditions (`generator.rs`) and scored on them
//! (`generator_eval.rs`).
//!
//! This is a model of prediction error in general; it knows no subject and no calibration.

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use super::encoder::training_stimuli;
use super::generator::GeneratorError;
use crate::model::calibration::column_stats;
use crate::model::conditioner::Conditioner;
use crate::model::generator::Condition;

/// Stimuli behind the reference statistics (drawn from a stream of their own).
const REFERENCE_IMAGES: usize = 256;
const REFERENCE_SEED: u64 = 0x5EED_0FAE;

/// Per-position mean of the features over many images, and the overall SD about it.
#[derive(Debug, Clone)]
pub struct FeatureStats {
    pub tokens_mean: Vec<f32>,
    pub semantic_mean: Vec<f32>,
    pub tokens_sd: f32,
    pub semantic_sd: f32,
}

impl FeatureStats {
    /// The encoder's feature statistics over a fixed set of simulator images.
    pub fn reference(conditioner: &Conditioner) -> Result<FeatureStats, GeneratorError> {
        let stimuli = training_stimuli(REFERENCE_SEED, 0, REFERENCE_IMAGES);
        let (mut tokens, mut semantic) = (Vec::new(), Vec::new());
        for chunk in stimuli.chunks(32) {
            let c = super::generator::condition(conditioner, chunk)?;
            tokens.extend(rows(c.tokens));
            semantic.extend(rows(c.semantic));
        }
        Ok(FeatureStats::from_rows(&tokens, &semantic, stimuli.len()))
    }

    /// The statistics of `n` images' features, row-major.
    pub fn from_rows(tokens: &[f32], semantic: &[f32], n: usize) -> FeatureStats {
        let (tokens_mean, tokens_sd) = mean_and_sd(tokens, n);
        let (semantic_mean, semantic_sd) = mean_and_sd(semantic, n);
        FeatureStats {
            tokens_mean,
            semantic_mean,
            tokens_sd,
            semantic_sd,
        }
    }
}

fn rows<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap_or_default()
}

/// Column means of `n` rows, and the SD of all values about their column's mean.
fn mean_and_sd(values: &[f32], n: usize) -> (Vec<f32>, f32) {
    let width = (values.len() / n.max(1)).max(1);
    let (mean, std) = column_stats(values, width);
    let variance = std.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / width as f64;
    (mean, variance.sqrt() as f32)
}

/// One row's degradation: `mean + keep (own - mean) + mix (other - mean) + noise sd ε`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Degradation {
    pub keep: f32,
    pub mix: f32,
    /// In units of the features' SD.
    pub noise: f32,
}

impl Degradation {
    pub const NONE: Degradation = Degradation {
        keep: 1.0,
        mix: 0.0,
        noise: 0.0,
    };
}

/// Degrades every row of `values` (`width` each) in place; row `i` mixes in row
/// `(i + 1) % rows`, as it was before degradation.
fn degrade_rows(
    values: &mut [f32],
    width: usize,
    mean: &[f32],
    sd: f32,
    per_row: &[Degradation],
    rng: &mut ChaCha8Rng,
) {
    let original = values.to_vec();
    let n = per_row.len();
    for (i, d) in per_row.iter().enumerate() {
        let other = &original[((i + 1) % n) * width..((i + 1) % n + 1) * width];
        let own = &original[i * width..(i + 1) * width];
        let out = &mut values[i * width..(i + 1) * width];
        for k in 0..width {
            let e: f32 = if d.noise > 0.0 {
                StandardNormal.sample(rng)
            } else {
                0.0
            };
            out[k] = mean[k]
                + d.keep * (own[k] - mean[k])
                + d.mix * (other[k] - mean[k])
                + d.noise * sd * e;
        }
    }
}

/// `cond` with each row degraded: `detail[i]` for its tokens, `semantic[i]` for its embedding
/// (a projector's two streams err independently).
pub fn degrade(
    cond: Condition<Flex>,
    stats: &FeatureStats,
    detail: &[Degradation],
    semantic: &[Degradation],
    rng: &mut ChaCha8Rng,
) -> Condition<Flex> {
    let [b, t, c] = cond.tokens.dims();
    let [_, p] = cond.semantic.dims();
    let mut tokens = rows(cond.tokens);
    let mut embedding = rows(cond.semantic);
    degrade_rows(
        &mut tokens,
        t * c,
        &stats.tokens_mean,
        stats.tokens_sd,
        detail,
        rng,
    );
    degrade_rows(
        &mut embedding,
        p,
        &stats.semantic_mean,
        stats.semantic_sd,
        semantic,
        rng,
    );
    Condition {
        tokens: Tensor::from_data(TensorData::new(tokens, [b, t, c]), &FlexDevice),
        semantic: Tensor::from_data(TensorData::new(embedding, [b, p]), &FlexDevice),
    }
}

/// A random degradation for training: with probability `brain_like` shrunk (keep in
/// `shrink_min..=1`), mixed (up to `mix_max`) and noisy; otherwise white noise alone. Noise up
/// to `noise_max` SDs either way.
pub fn random_degradation(
    rng: &mut ChaCha8Rng,
    brain_like: f64,
    shrink_min: f64,
    mix_max: f64,
    noise_max: f64,
) -> Degradation {
    let noise = rng.random_range(0.0..=noise_max.max(0.0)) as f32;
    if rng.random::<f64>() < brain_like {
        let keep = rng.random_range(shrink_min.clamp(0.0, 1.0)..=1.0);
        let mix = rng.random_range(0.0..=mix_max.max(0.0));
        Degradation {
            keep: keep as f32,
            mix: mix as f32,
            noise,
        }
    } else {
        Degradation {
            noise,
            ..Degradation::NONE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn rows_move_toward_the_mean_and_take_their_neighbour() {
        let mean = [1.0f32, -1.0];
        // Two rows of width 2.
        let mut v = vec![3.0f32, 1.0, 5.0, -3.0];
        let d = Degradation {
            keep: 0.5,
            mix: 0.25,
            noise: 0.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        degrade_rows(&mut v, 2, &mean, 1.0, &[d, Degradation::NONE], &mut rng);
        // Row 0: 1 + 0.5*(3-1) + 0.25*(5-1) = 3;  -1 + 0.5*(1+1) + 0.25*(-3+1) = -0.5.
        assert_eq!(v[..2], [3.0, -0.5]);
        // Row 1 untouched (keep 1, mix 0, no noise), mixing used the original row 0.
        assert_eq!(v[2..], [5.0, -3.0]);
    }

    #[test]
    fn noise_has_the_requested_sd() {
        let n = 20_000;
        let mean = vec![0.0f32; n];
        let mut v = vec![0.0f32; n];
        let d = Degradation {
            keep: 1.0,
            mix: 0.0,
            noise: 0.5,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        degrade_rows(&mut v, n, &mean, 2.0, &[d], &mut rng);
        let sd = (v.iter().map(|x| (x * x) as f64).sum::<f64>() / n as f64).sqrt();
        assert!((sd - 1.0).abs() < 0.03, "sd {sd}");
    }

    #[test]
    fn column_statistics_by_hand() {
        // Rows (1, 10) and (3, 14): means (2, 12); deviations ±1, ±2 → SD sqrt((1+4+1+4)/4).
        let (m, sd) = mean_and_sd(&[1.0, 10.0, 3.0, 14.0], 2);
        assert_eq!(m, vec![2.0, 12.0]);
        assert!((sd - 2.5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn random_degradations_stay_in_their_ranges() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws: Vec<Degradation> = (0..2000)
            .map(|_| random_degradation(&mut rng, 0.5, 0.3, 0.4, 0.5))
            .collect();
        let shrunk = draws.iter().filter(|d| d.keep < 1.0).count();
        assert!((800..1200).contains(&shrunk), "{shrunk} of 2000 brain-like");
        for d in &draws {
            assert!((0.3..=1.0).contains(&d.keep));
            assert!((0.0..=0.4).contains(&d.mix));
            assert!((0.0..=0.5).contains(&d.noise));
        }
    }
}
