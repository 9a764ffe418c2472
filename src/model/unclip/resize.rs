//! The resize between the decoder and the super-resolution stage: torch's
//! `interpolate(mode="bicubic", align_corners=False, antialias=True)`, which the unCLIP pipeline
//! calls. With `antialias` torch uses a different kernel from plain bicubic even when
//! upscaling — Keys' cubic with a = -0.5 (as PIL), not -0.75, and edge weights renormalised
//! instead of clamped indices — so burn's bicubic `interpolate` (and torch's own without
//! antialias) differ from it by up to ~0.3 on a [-1, 1] image. Written as two small matrix
//! products per image, which also gives a backward pass on every backend.

use burn::prelude::*;

/// The antialiased cubic filter (`aa_filter` in ATen's UpSampleKernel.cpp), a = -0.5.
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The [n_in, n_out] matrix whose column o holds output o's weights over the inputs (the
/// transpose of the resampling matrix, built on the host: see `resize_bilinear` in the
/// generator for the wgpu transpose defect this avoids).
pub fn antialias_bicubic_weights(n_in: usize, n_out: usize) -> Vec<f32> {
    let scale = n_in as f64 / n_out as f64;
    // Downscaling widens the filter by the scale (that is the antialiasing); upscaling keeps it.
    let (support, inv) = if scale >= 1.0 {
        (2.0 * scale, 1.0 / scale)
    } else {
        (2.0, 1.0)
    };
    let mut m = vec![0.0f32; n_in * n_out];
    for o in 0..n_out {
        let center = scale * (o as f64 + 0.5);
        // ATen truncates toward zero here (int casts), which for these positive values floors.
        let lo = ((center - support + 0.5).max(0.0) as usize).min(n_in);
        let hi = ((center + support + 0.5) as usize).min(n_in);
        let weights: Vec<f64> = (lo..hi)
            .map(|j| cubic((j as f64 - center + 0.5) * inv))
            .collect();
        let total: f64 = weights.iter().sum();
        for (j, w) in (lo..hi).zip(weights) {
            m[j * n_out + o] = if total != 0.0 { w / total } else { w } as f32;
        }
    }
    m
}

/// [b, c, h, w] → [b, c, size[0], size[1]], as torch's antialiased bicubic resize.
pub fn resize_bicubic_antialias<B: Backend>(x: Tensor<B, 4>, size: [usize; 2]) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let [ho, wo] = size;
    if [h, w] == size {
        return x;
    }
    let device = x.device();
    let matrix = |n_in: usize, n_out: usize| {
        Tensor::<B, 2>::from_data(
            TensorData::new(antialias_bicubic_weights(n_in, n_out), [n_in, n_out]),
            &device,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_a_half_weights_renormalised_at_the_edges() {
        let m = antialias_bicubic_weights(16, 32);
        let column = |o: usize| -> Vec<f32> { (0..16).map(|i| m[i * 32 + o]).collect() };
        for o in 0..32 {
            let sum: f32 = column(o).iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "output {o}: {sum}");
        }
        // Output 4 sits at input 1.75: a = -0.5 weights for offsets 1.75, 0.75, 0.25, 1.25
        // (a = -0.75, plain bicubic, would give -0.0351563, 0.2578125, ...).
        assert_eq!(
            column(4)[..5],
            [-0.0234375, 0.2265625, 0.8671875, -0.0703125, 0.0]
        );
        // Output 0 (at input -0.25) keeps only inputs 0 and 1, rescaled to sum to one.
        let edge = column(0);
        assert!((edge[0] - 0.8671875 / 0.796875).abs() < 1e-6, "{edge:?}");
        assert!((edge[1] + 0.0703125 / 0.796875).abs() < 1e-6, "{edge:?}");
        assert_eq!(edge[2], 0.0);
    }
}
