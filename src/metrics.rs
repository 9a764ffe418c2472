//! Decoding metrics as the field computes them: 2-way identification (Pearson correlation of
//! the prediction with its own target vs every other target), top-k retrieval by cosine among
//! candidates, PixCorr (Pearson correlation of pixels) and SSIM (greyscale, Gaussian window
//! σ = 1.5, data range 1, population covariance: scikit-image's `structural_similarity(
//! gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)` as MindEye and
//! Brain-Diffuser call it; checked against it in `tests/metrics_reference.rs`),
//! and percentile bootstrap confidence intervals over trials.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Pearson correlation of two equally long series (0 when either is constant).
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()).max(1) as f64;
    let ma = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt().max(1e-30)
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

/// Per trial: the fraction of other targets its prediction correlates with less than with its
/// own (chance 0.5). Mean over trials is the usual 2-way identification score.
pub fn two_way_identification(predictions: &[Vec<f32>], targets: &[Vec<f32>]) -> Vec<f64> {
    let n = predictions.len().min(targets.len());
    (0..n)
        .map(|i| {
            let own = pearson(&predictions[i], &targets[i]);
            let wins = (0..n)
                .filter(|&j| j != i && pearson(&predictions[i], &targets[j]) < own)
                .count();
            wins as f64 / (n - 1).max(1) as f64
        })
        .collect()
}

/// Per trial: 1 when its own target is among the `k` most cosine-similar of `candidates`
/// targets (its own plus `candidates - 1` others drawn with `seed`), else 0.
pub fn top_k_retrieval(
    predictions: &[Vec<f32>],
    targets: &[Vec<f32>],
    candidates: usize,
    k: usize,
    seed: u64,
) -> Vec<f64> {
    let n = predictions.len().min(targets.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            // Partial Fisher-Yates: the first `candidates - 1` are a uniform draw.
            let m = (candidates.saturating_sub(1)).min(others.len());
            for a in 0..m {
                let b = rng.random_range(a..others.len());
                others.swap(a, b);
            }
            let own = cosine(&predictions[i], &targets[i]);
            let better = others[..m]
                .iter()
                .filter(|&&j| cosine(&predictions[i], &targets[j]) >= own)
                .count();
            f64::from(better < k)
        })
        .collect()
}

/// Pearson correlation of two images' values (any layout, same length).
pub fn pixcorr(a: &[f32], b: &[f32]) -> f64 {
    pearson(a, b)
}

/// Grain of a greyscale image (`w` x `h`, values 0..1): the median absolute difference between a
/// pixel and the mean of its 3 x 3 neighbourhood (edge pixels repeated). Pixel noise anywhere
/// raises it; flat regions, smooth gradients and clean edges (too few pixels to move a median)
/// leave it near 0.
pub fn grain(grey: &[f32], w: usize, h: usize) -> f64 {
    if w == 0 || h == 0 || grey.len() < w * h {
        return 0.0;
    }
    let at = |x: isize, y: isize| {
        grey[y.clamp(0, h as isize - 1) as usize * w + x.clamp(0, w as isize - 1) as usize] as f64
    };
    let mut residuals = Vec::with_capacity(w * h);
    for y in 0..h as isize {
        for x in 0..w as isize {
            let mut local = 0.0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    local += at(x + dx, y + dy);
                }
            }
            residuals.push((at(x, y) - local / 9.0).abs());
        }
    }
    residuals.sort_by(f64::total_cmp);
    residuals[residuals.len() / 2]
}

/// ITU-R 601 luma of interleaved RGB in 0..1.
pub fn greyscale(rgb: &[f32]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
        .collect()
}

fn gaussian_blur(img: &[f64], w: usize, h: usize, kernel: &[f64]) -> Vec<f64> {
    let r = kernel.len() / 2;
    let mut tmp = vec![0.0; w * h];
    let mut out = vec![0.0; w * h];
    // scikit-image's `gaussian` filters with mode "nearest" (the edge sample repeated).
    let edge = |i: isize, n: usize| -> usize { i.clamp(0, n as isize - 1) as usize };
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, &g)| g * img[y * w + edge(x as isize + k as isize - r as isize, w)])
                .sum();
        }
    }
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, &g)| g * tmp[edge(y as isize + k as isize - r as isize, h) * w + x])
                .sum();
        }
    }
    out
}

/// Mean SSIM of two greyscale images (`w` x `h`, values 0..1).
pub fn ssim(a: &[f32], b: &[f32], w: usize, h: usize) -> f64 {
    let sigma = 1.5f64;
    let radius = (3.5 * sigma + 0.5) as isize; // truncate = 3.5, as scikit-image
    let mut kernel: Vec<f64> = (-radius..=radius)
        .map(|i| (-(i as f64).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let fa: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let fb: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let prod = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<f64>>();
    let blur = |x: &[f64]| gaussian_blur(x, w, h, &kernel);
    let (ma, mb) = (blur(&fa), blur(&fb));
    let (aa, bb, ab) = (
        blur(&prod(&fa, &fa)),
        blur(&prod(&fb, &fb)),
        blur(&prod(&fa, &fb)),
    );
    // Population covariance (use_sample_covariance=False), as the field's evaluations.
    let cov_norm = 1.0;
    let (c1, c2) = ((0.01f64).powi(2), (0.03f64).powi(2));
    // The mean leaves out a border of the window's radius, as scikit-image does.
    let pad = radius as usize;
    let mut total = 0.0;
    let mut count = 0usize;
    for y in pad..h.saturating_sub(pad) {
        for x in pad..w.saturating_sub(pad) {
            let i = y * w + x;
            let va = cov_norm * (aa[i] - ma[i] * ma[i]);
            let vb = cov_norm * (bb[i] - mb[i] * mb[i]);
            let cab = cov_norm * (ab[i] - ma[i] * mb[i]);
            total += ((2.0 * ma[i] * mb[i] + c1) * (2.0 * cab + c2))
                / ((ma[i].powi(2) + mb[i].powi(2) + c1) * (va + vb + c2));
            count += 1;
        }
    }
    total / count.max(1) as f64
}

/// A mean with its 95 % percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} [{:.3}, {:.3}]", self.mean, self.low, self.high)
    }
}

/// Mean of per-trial scores and a 95 % CI from `resamples` bootstrap draws of trials.
pub fn bootstrap(scores: &[f64], resamples: usize, seed: u64) -> Estimate {
    let n = scores.len();
    if n == 0 {
        return Estimate {
            mean: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let mean = scores.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| scores[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Estimate {
        mean,
        low: at(0.025),
        high: at(0.975),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identification_is_perfect_for_exact_and_half_for_unrelated_predictions() {
        let targets: Vec<Vec<f32>> = (0..20)
            .map(|i| (0..30).map(|j| ((i * 31 + j * 17) % 23) as f32).collect())
            .collect();
        let exact = two_way_identification(&targets, &targets);
        assert!(exact.iter().all(|&s| s == 1.0));
        let flat: Vec<Vec<f32>> = targets
            .iter()
            .map(|t| t.iter().rev().cloned().collect())
            .collect();
        let mean = two_way_identification(&flat, &targets).iter().sum::<f64>() / 20.0;
        assert!((0.2..0.8).contains(&mean), "{mean}");
        let top1 = top_k_retrieval(&targets, &targets, 10, 1, 1);
        assert_eq!(top1.iter().sum::<f64>(), 20.0);
    }

    #[test]
    fn identification_counts_by_hand() {
        // Prediction 0 correlates with target 1 better than with its own: 0 of 1 wins.
        let targets = vec![vec![1.0, 2.0, 3.0], vec![3.0, 2.0, 1.0]];
        let predictions = vec![vec![3.0, 2.5, 1.0], vec![3.0, 2.0, 1.5]];
        assert_eq!(
            two_way_identification(&predictions, &targets),
            vec![0.0, 1.0]
        );
    }

    #[test]
    fn grain_by_hand_and_under_noise() {
        assert_eq!(grain(&[0.5; 16], 4, 4), 0.0);
        // A one-pixel checkerboard: inside, every 3 x 3 neighbourhood holds 5 of the pixel's own
        // value and 4 of the other, so each pixel is 4/9 from its local mean; 64 of 100 pixels
        // are inside, so that is the median.
        let (w, h) = (10, 10);
        let board: Vec<f32> = (0..w * h).map(|i| ((i % w + i / w) % 2) as f32).collect();
        assert!((grain(&board, w, h) - 4.0 / 9.0).abs() < 1e-6);
        // A clean edge has none; the same edge with faint noise has plenty.
        let edge: Vec<f32> = (0..64 * 64).map(|i| f32::from(i % 64 >= 32)).collect();
        assert_eq!(grain(&edge, 64, 64), 0.0);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let noisy: Vec<f32> = edge
            .iter()
            .map(|v| v + rng.random_range(-0.05f32..0.05))
            .collect();
        let g = grain(&noisy, 64, 64);
        assert!(g > 0.01 && g < 0.05, "{g}");
    }

    #[test]
    fn ssim_of_identical_images_is_one_and_drops_with_noise() {
        let (w, h) = (32, 24);
        let img: Vec<f32> = (0..w * h)
            .map(|i| ((i % w) as f32 / w as f32) * 0.8 + ((i / w) % 5) as f32 * 0.04)
            .collect();
        assert!((ssim(&img, &img, w, h) - 1.0).abs() < 1e-9);
        let noisy: Vec<f32> = img
            .iter()
            .enumerate()
            .map(|(i, &v)| v + if (i * 7919) % 3 == 0 { 0.2 } else { -0.1 })
            .collect();
        let s = ssim(&img, &noisy, w, h);
        assert!(s < 0.9 && s > 0.0, "{s}");
        // A constant shift keeps structure, so SSIM stays much higher than for noise.
        let shifted: Vec<f32> = img.iter().map(|v| v + 0.05).collect();
        assert!(ssim(&img, &shifted, w, h) > s);
        assert!((pixcorr(&img, &shifted) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean() {
        let scores: Vec<f64> = (0..50).map(|i| f64::from(i % 4 != 0)).collect();
        let e = bootstrap(&scores, 1000, 3);
        assert!((e.mean - 0.74).abs() < 1e-12);
        assert!(
            e.low < e.mean && e.mean < e.high && e.high - e.low < 0.35,
            "{e}"
        );
    }
}
