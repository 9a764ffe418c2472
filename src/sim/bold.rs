//! BOLD time series: neural events through a haemodynamic response, on the anatomical baseline,
//! with the noise a 3 T EPI run has, and head motion applied by resampling.
//!
//! Numbers and where they come from:
//! - HRF: the canonical double gamma (SPM; Glover 1999): response peak at 5 s, undershoot
//!   peaking near 15 s at 1/6 of the peak. Per voxel, a lag (SD 0.3 s) and a time-scale
//!   (SD 10 %) vary it, as measured across cortex (Handwerker et al. 2004).
//! - Evoked amplitude: percent signal change per area, larger in early visual cortex (about 2 %
//!   in V1 for high-contrast images at 3 T) than in high-level areas (under 1 %).
//! - Trial-to-trial variability: a multiplicative gain (SD 20 %) and additive neural noise per
//!   presentation; NSD's single-trial responses are noisy in exactly this way.
//! - Thermal noise: white, spatially uniform in magnitude, sized with the physiological part so
//!   that grey matter has the requested temporal SNR (default 70, typical of 3 mm 3 T EPI,
//!   Triantafyllou et al. 2005); physiological noise (respiration about 0.3 Hz, cardiac about
//!   1.1 Hz, both aliased by the TR) scales with the signal, 40 % of grey-matter noise variance.
//! - Drift: a low-order polynomial per voxel (global + local), about 1 % over a run.
//! - Steady state: the first volumes are brighter (T1 saturation), which is why dummy scans are
//!   discarded.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::design::RunDesign;
use super::motion::random_motion;
use super::subject::{Subject, Tissue};
use crate::geometry::{apply_motion, MotionParams};

/// Time step of the HRF table, seconds.
const HRF_DT: f64 = 0.05;
/// Length of the HRF table, seconds.
const HRF_LEN_S: f64 = 32.0;

fn gamma_pdf(t: f64, shape: f64) -> f64 {
    if t <= 0.0 {
        return 0.0;
    }
    // Scale 1 s; Γ(shape) by Lanczos via ln_gamma-free product for the integer shapes used.
    let mut gamma = 1.0;
    let mut k = 1.0;
    while k < shape {
        gamma *= k;
        k += 1.0;
    }
    t.powf(shape - 1.0) * (-t).exp() / gamma
}

/// The canonical double-gamma HRF at `t` seconds (SPM: shapes 6 and 16, ratio 1/6).
pub fn canonical_hrf(t: f64) -> f64 {
    gamma_pdf(t, 6.0) - gamma_pdf(t, 16.0) / 6.0
}

/// The response to a `duration_s` boxcar, tabulated every `HRF_DT`, scaled to peak at 1.
pub fn boxcar_response_table(duration_s: f64) -> Vec<f32> {
    let n = (HRF_LEN_S / HRF_DT) as usize;
    let steps = (duration_s / HRF_DT).round().max(1.0) as usize;
    let h: Vec<f64> = (0..n).map(|i| canonical_hrf(i as f64 * HRF_DT)).collect();
    let mut out: Vec<f64> = (0..n)
        .map(|i| (0..steps.min(i + 1)).map(|s| h[i - s]).sum::<f64>())
        .collect();
    let peak = out.iter().cloned().fold(0.0, f64::max).max(1e-12);
    out.iter_mut().for_each(|v| *v /= peak);
    out.into_iter().map(|v| v as f32).collect()
}

fn table_at(table: &[f32], t: f64) -> f32 {
    if t <= 0.0 {
        return 0.0;
    }
    let x = t / HRF_DT;
    let i = x.floor() as usize;
    if i + 1 >= table.len() {
        return 0.0;
    }
    let f = (x - i as f64) as f32;
    table[i] * (1.0 - f) + table[i + 1] * f
}

#[derive(Debug, Clone)]
pub struct NoiseParams {
    pub tsnr: f32,
    pub physio_fraction: f32,
    pub respiration_hz: f64,
    pub cardiac_hz: f64,
    pub drift_percent: f32,
    pub motion: bool,
    pub motion_step: f32,
    pub spike_probability: f64,
    pub spike_size: f32,
    pub trial_variability: f32,
    pub neural_noise: f32,
}

/// What a run leaves besides its volumes: the ground truth.
pub struct RunTruth {
    pub motion: Vec<MotionParams>,
    /// For each sampled voxel, the noise-free, motion-free signal per volume:
    /// baseline x (1 + evoked).
    pub clean: Vec<Vec<f32>>,
    /// SD of the thermal noise added to every voxel.
    pub thermal_sd: f32,
}

/// Simulates one run, handing each volume (x fastest) to `on_volume` as it is made, so a run
/// never has to be held in memory. `responses[v][s]` is voxel `v`'s mean-normalised response to
/// stimulus `s`; `sampled` are flat voxel indices whose clean signal is kept as ground truth.
#[allow(clippy::too_many_arguments)]
pub fn simulate_run(
    subject: &Subject,
    responses: &[Vec<f32>],
    design: &RunDesign,
    tr_s: f64,
    noise: &NoiseParams,
    sampled: &[usize],
    seed: u64,
    on_volume: &mut dyn FnMut(&[f32]),
) -> RunTruth {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n_vol = design.n_volumes;
    let n_vox = subject.grid.n_voxels();
    let std_normal = Normal::new(0.0f32, 1.0).unwrap_or_else(|_| unreachable!());
    let duration = design.trials.first().map_or(3.0, |t| t.duration_s);
    let table = boxcar_response_table(duration);

    // Evoked fractional signal change of every responsive voxel, per volume.
    let mut evoked = vec![0.0f32; n_vox];
    let mut evoked_series: Vec<(usize, Vec<f32>)> = Vec::with_capacity(subject.voxels.len());
    for (v, model) in subject.voxels.iter().enumerate() {
        let amplitudes: Vec<f32> = design
            .trials
            .iter()
            .map(|t| {
                let r = responses[v][t.stimulus];
                r * (1.0 + noise.trial_variability * std_normal.sample(&mut rng))
                    + noise.neural_noise * std_normal.sample(&mut rng)
            })
            .collect();
        let scale = model.psc / 100.0;
        let series: Vec<f32> = (0..n_vol)
            .map(|k| {
                let t = k as f64 * tr_s;
                design
                    .trials
                    .iter()
                    .zip(&amplitudes)
                    .map(|(trial, a)| {
                        let tau =
                            (t - trial.onset_s - model.hrf_lag_s as f64) / model.hrf_width as f64;
                        a * table_at(&table, tau)
                    })
                    .sum::<f32>()
                    * scale
            })
            .collect();
        evoked_series.push((model.index, series));
    }

    // Physiological noise: global phases, per-voxel amplitudes and phase offsets.
    let grey_mean = subject.grey_mean();
    let tsnr = noise.tsnr.max(1.0);
    let physio_sd = noise.physio_fraction.clamp(0.0, 1.0).sqrt() / tsnr;
    let thermal_sd = grey_mean / tsnr * (1.0 - noise.physio_fraction.clamp(0.0, 1.0)).sqrt();
    let resp_amp = physio_sd * (2.0f32 * 0.6).sqrt();
    let card_amp = physio_sd * (2.0f32 * 0.4).sqrt();
    struct Physio {
        rc: f32,
        rs: f32,
        cc: f32,
        cs: f32,
        d1: f32,
        d2: f32,
    }
    let global_drift = [std_normal.sample(&mut rng), std_normal.sample(&mut rng)];
    let drift_sd = noise.drift_percent / 100.0 / 2.0;
    let physio: Vec<Physio> = (0..n_vox)
        .map(|i| {
            let inside = subject.tissue[i] != Tissue::Air;
            let a = if inside {
                rng.random_range(0.5f32..1.5).sqrt()
            } else {
                0.0
            };
            let c = if inside {
                rng.random_range(0.5f32..1.5).sqrt()
            } else {
                0.0
            };
            let pulsatile = if subject.tissue[i] == Tissue::Csf {
                1.5
            } else {
                1.0
            };
            // Respiration is nearly in phase across the brain; cardiac pulsation is not.
            let dr = rng.random_range(-0.5f32..0.5);
            let dc = rng.random_range(0.0f32..std::f32::consts::TAU);
            let local = [std_normal.sample(&mut rng), std_normal.sample(&mut rng)];
            let d = |k: usize| {
                if inside {
                    drift_sd * (0.7 * global_drift[k] + 0.7 * local[k])
                } else {
                    0.0
                }
            };
            Physio {
                rc: resp_amp * a * dr.cos(),
                rs: resp_amp * a * dr.sin(),
                cc: card_amp * c * pulsatile * dc.cos(),
                cs: card_amp * c * pulsatile * dc.sin(),
                d1: d(0),
                d2: d(1),
            }
        })
        .collect();

    let motion = if noise.motion {
        random_motion(
            n_vol,
            noise.motion_step,
            noise.spike_probability,
            noise.spike_size,
            &mut rng,
        )
    } else {
        vec![[0.0; 6]; n_vol]
    };

    let mut clean = vec![Vec::with_capacity(n_vol); sampled.len()];
    let mut head = vec![0.0f32; n_vox];
    let mut moved = Vec::new();
    let (mut resp_phase, mut card_phase) = (
        rng.random_range(0.0..std::f64::consts::TAU),
        rng.random_range(0.0..std::f64::consts::TAU),
    );
    for k in 0..n_vol {
        let t = k as f64 * tr_s;
        evoked.iter_mut().for_each(|e| *e = 0.0);
        for (index, series) in &evoked_series {
            evoked[*index] = series[k];
        }
        // Breathing and heart rates wander a little over the run.
        let (sr, cr) = (resp_phase.sin() as f32, resp_phase.cos() as f32);
        let (sc, cc) = (card_phase.sin() as f32, card_phase.cos() as f32);
        let tau = if n_vol > 1 {
            2.0 * k as f32 / (n_vol - 1) as f32 - 1.0
        } else {
            0.0
        };
        let (p1, p2) = (tau, 0.5 * (3.0 * tau * tau - 1.0));
        // T1 saturation before steady state.
        let steady = 1.0 + 0.6 * (-(k as f32) / 0.8).exp();
        for i in 0..n_vox {
            let p = &physio[i];
            let physio_signal = p.rc * sr + p.rs * cr + p.cc * sc + p.cs * cc;
            head[i] = subject.baseline[i]
                * steady
                * (1.0 + evoked[i] + physio_signal + p.d1 * p1 + p.d2 * p2);
        }
        for (s, &index) in sampled.iter().enumerate() {
            clean[s].push(subject.baseline[index] * (1.0 + evoked[index]));
        }
        apply_motion(
            &head,
            subject.grid.dims,
            subject.grid.voxel_mm,
            &motion[k],
            &mut moved,
        );
        for v in moved.iter_mut() {
            *v = (*v + thermal_sd * std_normal.sample(&mut rng)).max(0.0);
        }
        on_volume(&moved);
        resp_phase +=
            std::f64::consts::TAU * noise.respiration_hz * tr_s * (1.0 + 0.05 * (t / 40.0).sin());
        card_phase +=
            std::f64::consts::TAU * noise.cardiac_hz * tr_s * (1.0 + 0.03 * (t / 23.0).sin());
    }
    RunTruth {
        motion,
        clean,
        thermal_sd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_hrf_peaks_at_five_seconds_with_an_undershoot() {
        let samples: Vec<(f64, f64)> = (0..600)
            .map(|i| (i as f64 * 0.05, canonical_hrf(i as f64 * 0.05)))
            .collect();
        let peak = samples
            .iter()
            .cloned()
            .fold((0.0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        assert!((peak.0 - 5.0).abs() <= 0.05, "peak at {} s", peak.0);
        let trough = samples
            .iter()
            .cloned()
            .fold((0.0, f64::MAX), |a, b| if b.1 < a.1 { b } else { a });
        assert!(
            (14.0..=16.5).contains(&trough.0),
            "undershoot at {} s",
            trough.0
        );
        assert!(trough.1 < 0.0 && trough.1 > -0.2 * peak.1);
        // A 3 s stimulus: the response peaks about 6-7 s after onset, scaled to 1.
        let table = boxcar_response_table(3.0);
        let (i, v) = table
            .iter()
            .enumerate()
            .fold((0, 0.0f32), |a, (i, v)| if *v > a.1 { (i, *v) } else { a });
        assert!((v - 1.0).abs() < 1e-6);
        let t = i as f64 * HRF_DT;
        assert!((6.0..=7.0).contains(&t), "boxcar response peak at {t} s");
    }
}
