//! Simulated head motion: a random walk with occasional spikes, in the six rigid-body
//! parameters of `crate::geometry` (which moves the volumes).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::geometry::MotionParams;

/// A head that drifts slowly (a mean-reverting random walk) and now and then jerks (a spike that
/// decays back over a few volumes).
pub fn random_motion(
    n: usize,
    step: f32,
    spike_probability: f64,
    spike_size: f32,
    rng: &mut ChaCha8Rng,
) -> Vec<MotionParams> {
    let walk = Normal::new(0.0f32, step.max(0.0)).unwrap_or_else(|_| unreachable!());
    let jerk = Normal::new(0.0f32, spike_size.max(0.0)).unwrap_or_else(|_| unreachable!());
    let mut drift = [0.0f32; 6];
    let mut spike = [0.0f32; 6];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let jerks = rng.random_bool(spike_probability.clamp(0.0, 1.0));
        for d in 0..6 {
            drift[d] = 0.98 * drift[d] + walk.sample(rng);
            spike[d] *= 0.5;
            if jerks {
                spike[d] += jerk.sample(rng);
            }
        }
        let mut p = [0.0f32; 6];
        for d in 0..6 {
            p[d] = drift[d] + spike[d];
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_walk_has_the_requested_length_and_moves() {
        let walk = random_motion(100, 0.03, 0.05, 1.0, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(walk.len(), 100);
        assert!(walk.iter().any(|p| p.iter().any(|v| v.abs() > 0.05)));
    }
}
