//! The single-trial GLM's arithmetic: SPM's canonical HRF, the design matrix (one regressor per
//! trial, Legendre drifts, intercept), its least-squares operator by Cholesky, betas in percent
//! signal change, and how many drift terms a run's design can afford. Plain `f64` slices: no
//! files, no volumes (`super` reads and writes those).

use crate::preprocess::trials::Trial;

/// SPM's canonical HRF: gamma densities of shape 6 (response) and 16 (undershoot), scale 1 s,
/// the undershoot at 1/6; its peak is near 5 s.
const HRF_SHAPES: (u32, u32) = (6, 16);
const HRF_UNDERSHOOT_RATIO: f64 = 6.0;
const HRF_LENGTH_S: f64 = 32.0;
/// The fine time grid the boxcars are convolved on (SPM uses TR / 16; this is finer).
const FINE_DT: f64 = 0.05;

fn gamma_pdf(t: f64, shape: u32) -> f64 {
    if t <= 0.0 {
        return 0.0;
    }
    let ln_gamma: f64 = (1..shape).map(|k| (k as f64).ln()).sum();
    ((shape as f64 - 1.0) * t.ln() - t - ln_gamma).exp()
}

/// SPM's canonical double-gamma HRF at `t` seconds (unnormalised: it integrates to 5/6).
pub fn spm_hrf(t: f64) -> f64 {
    gamma_pdf(t, HRF_SHAPES.0) - gamma_pdf(t, HRF_SHAPES.1) / HRF_UNDERSHOOT_RATIO
}

/// The response to a `duration_s` boxcar starting at 0, every `FINE_DT`, scaled to peak at 1
/// (as GLMsingle scales it, so a beta is the response's peak height).
fn boxcar_response(duration_s: f64) -> Vec<f64> {
    let n = ((duration_s + HRF_LENGTH_S) / FINE_DT).ceil() as usize + 1;
    let steps = ((duration_s / FINE_DT).round() as usize).max(1);
    let h: Vec<f64> = (0..n).map(|i| spm_hrf(i as f64 * FINE_DT)).collect();
    let mut out: Vec<f64> = (0..n)
        .map(|i| (0..steps.min(i + 1)).map(|j| h[i - j]).sum())
        .collect();
    let peak = out.iter().copied().fold(0.0, f64::max).max(1e-12);
    out.iter_mut().for_each(|v| *v /= peak);
    out
}

fn sample(table: &[f64], tau: f64) -> f64 {
    if tau < 0.0 {
        return 0.0;
    }
    let x = tau / FINE_DT;
    let i = x.floor() as usize;
    if i + 1 >= table.len() {
        return 0.0;
    }
    let f = x - i as f64;
    table[i] * (1.0 - f) + table[i + 1] * f
}

/// The design matrix (row-major, `times.len()` × (trials + degree + 1)): one column per trial
/// sampled at each volume's time, then Legendre polynomials 0..=degree over the run (column
/// `trials.len()` is the intercept). Errors name a trial no volume sees.
fn design_matrix(times: &[f64], trials: &[Trial], degree: usize) -> Result<Vec<f64>, String> {
    let cols = trials.len() + degree + 1;
    let mut x = vec![0.0; times.len() * cols];
    let mut tables: Vec<(f64, Vec<f64>)> = Vec::new();
    for (c, trial) in trials.iter().enumerate() {
        let d = trial.duration_s;
        if !tables.iter().any(|(t, _)| *t == d) {
            tables.push((d, boxcar_response(d)));
        }
        let table = tables
            .iter()
            .find(|(t, _)| *t == d)
            .map(|(_, t)| t.as_slice())
            .unwrap_or(&[]);
        let mut energy = 0.0;
        for (r, &t) in times.iter().enumerate() {
            let v = sample(table, t - trial.onset_s);
            x[r * cols + c] = v;
            energy += v * v;
        }
        if energy < 1e-6 {
            let (first, last) = (times.first().unwrap_or(&0.0), times.last().unwrap_or(&0.0));
            return Err(format!(
                "the trial at onset {} s has no response in the run's volumes (kept after the \
                 dummy scans: {first}-{last} s): expected onsets within the run",
                trial.onset_s
            ));
        }
    }
    let n = times.len();
    for r in 0..n {
        // Legendre recurrence on [-1, 1]: (k+1) P_{k+1} = (2k+1) x P_k - k P_{k-1}.
        let s = if n > 1 {
            2.0 * r as f64 / (n - 1) as f64 - 1.0
        } else {
            0.0
        };
        let (mut prev, mut cur) = (0.0, 1.0);
        for k in 0..=degree {
            x[r * cols + trials.len() + k] = cur;
            let next = ((2 * k + 1) as f64 * s * cur - k as f64 * prev) / (k + 1) as f64;
            (prev, cur) = (cur, next);
        }
    }
    Ok(x)
}

/// (XᵀX)⁻¹Xᵀ (cols × rows, row-major) by a Cholesky factorisation of XᵀX, or the first column
/// that is a combination of the earlier ones.
fn least_squares_operator(x: &[f64], rows: usize, cols: usize) -> Result<Vec<f64>, usize> {
    let mut l = vec![0.0; cols * cols];
    for i in 0..cols {
        for j in 0..=i {
            let g: f64 = (0..rows).map(|r| x[r * cols + i] * x[r * cols + j]).sum();
            let s = g
                - (0..j)
                    .map(|k| l[i * cols + k] * l[j * cols + k])
                    .sum::<f64>();
            if i == j {
                let norm: f64 = (0..rows).map(|r| x[r * cols + i].powi(2)).sum();
                // Relative to the column's own energy: what remains is its independent part.
                if s.is_nan() || s <= 1e-10 * norm.max(1e-300) {
                    return Err(i);
                }
                l[i * cols + i] = s.sqrt();
            } else {
                l[i * cols + j] = s / l[j * cols + j];
            }
        }
    }
    let mut op = vec![0.0; cols * rows];
    let mut z = vec![0.0; cols];
    for r in 0..rows {
        // Solve L Lᵀ z = x_r (row r of X), column r of the operator.
        for i in 0..cols {
            let s: f64 = (0..i).map(|k| l[i * cols + k] * z[k]).sum();
            z[i] = (x[r * cols + i] - s) / l[i * cols + i];
        }
        for i in (0..cols).rev() {
            let s: f64 = (i + 1..cols).map(|k| l[k * cols + i] * z[k]).sum();
            z[i] = (z[i] - s) / l[i * cols + i];
        }
        for i in 0..cols {
            op[i * rows + r] = z[i];
        }
    }
    Ok(op)
}

/// Betas in percent signal change (trial beta / intercept × 100), trial-major
/// (`trials × voxels`), from `series` (time-major, `rows × voxels`). Voxels with a non-finite
/// sample or no positive baseline get 0; their count is returned.
fn fit_psc(
    op: &[f64],
    rows: usize,
    cols: usize,
    trials: usize,
    series: &[f32],
    voxels: usize,
) -> (Vec<f32>, usize) {
    let mut beta = vec![0.0f64; cols * voxels];
    for (c, b) in beta.chunks_exact_mut(voxels).enumerate() {
        for (r, y) in series.chunks_exact(voxels).enumerate() {
            let m = op[c * rows + r];
            b.iter_mut().zip(y).for_each(|(b, &y)| *b += m * y as f64);
        }
    }
    let intercept = &beta[trials * voxels..(trials + 1) * voxels];
    let mut out = vec![0.0f32; trials * voxels];
    let mut skipped = 0;
    for v in 0..voxels {
        let base = intercept[v];
        // NaN anywhere in the voxel's series makes every beta NaN, the intercept included.
        if !(base.is_finite() && base > 1e-6) {
            skipped += 1;
            continue;
        }
        for t in 0..trials {
            out[t * voxels + v] = (beta[t * voxels + v] / base * 100.0) as f32;
        }
    }
    (out, skipped)
}

/// A run's fitted design: the least-squares operator (XᵀX)⁻¹Xᵀ, `cols × rows` row-major.
pub(super) struct Fit {
    op: Vec<f64>,
    rows: usize,
    cols: usize,
    trials: usize,
    pub degree: usize,
}

/// Drift degrees tried when none is set, highest first.
const MAX_AUTO_DEGREE: usize = 3;
/// The most a drift basis may multiply the mean variance of the trial betas (against the
/// intercept alone) before a lower degree is used. When trials fill a run from its first volume
/// to its last (no rest), slow swings of trial amplitude look like degree >= 2 polynomials and
/// their betas' variance grows 10-35x (the simulator's runs); with 12-20 s of rest at the start
/// degree 3 costs about 2x.
const MAX_INFLATION: f64 = 3.0;

impl Fit {
    /// The design with `degree` drift terms, or a message naming what makes it singular.
    pub(super) fn new(times: &[f64], trials: &[Trial], degree: usize) -> Result<Fit, String> {
        let (rows, cols) = (times.len(), trials.len() + degree + 1);
        let x = design_matrix(times, trials, degree)?;
        let op = least_squares_operator(&x, rows, cols).map_err(|c| {
            let what = match trials.get(c) {
                Some(t) => format!("the trial at onset {} s", t.onset_s),
                None => format!("drift term {}", c - trials.len()),
            };
            format!(
                "the design is singular: {what} is a combination of the earlier regressors \
                 (trials at the same time, or too few volumes); expected separable trials"
            )
        })?;
        Ok(Fit {
            op,
            rows,
            cols,
            trials: trials.len(),
            degree,
        })
    }

    /// As `new`, with the highest drift degree up to `MAX_AUTO_DEGREE` that the design can
    /// separate from the trials (see `MAX_INFLATION`).
    pub(super) fn auto(times: &[f64], trials: &[Trial]) -> Result<Fit, String> {
        let base = Fit::new(times, trials, 0)?;
        let floor = base.trial_variance();
        for degree in (1..=MAX_AUTO_DEGREE).rev() {
            if let Ok(fit) = Fit::new(times, trials, degree) {
                if fit.trial_variance() <= MAX_INFLATION * floor {
                    return Ok(fit);
                }
            }
        }
        Ok(base)
    }

    /// Mean of diag((XᵀX)⁻¹) over the trial columns: each beta's variance per unit noise
    /// variance (op opᵀ = (XᵀX)⁻¹).
    fn trial_variance(&self) -> f64 {
        let rows = self.rows;
        let sum: f64 = (0..self.trials)
            .map(|i| {
                self.op[i * rows..(i + 1) * rows]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
            })
            .sum();
        sum / self.trials.max(1) as f64
    }

    /// Betas in percent signal change, `trials × voxels`, and how many voxels had none.
    pub(super) fn psc(&self, series: &[f32], voxels: usize) -> (Vec<f32>, usize) {
        fit_psc(&self.op, self.rows, self.cols, self.trials, series, voxels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spm_hrf_peaks_near_5_s_and_integrates_to_five_sixths() {
        let dt = 0.001;
        let ts: Vec<f64> = (0..(HRF_LENGTH_S / dt) as usize)
            .map(|i| i as f64 * dt)
            .collect();
        let h: Vec<f64> = ts.iter().map(|&t| spm_hrf(t)).collect();
        let peak = (0..h.len()).max_by(|&a, &b| h[a].total_cmp(&h[b])).unwrap();
        let low = (0..h.len()).min_by(|&a, &b| h[a].total_cmp(&h[b])).unwrap();
        assert!((4.8..5.2).contains(&ts[peak]), "peak at {} s", ts[peak]);
        assert!(
            (14.0..17.0).contains(&ts[low]) && h[low] < 0.0,
            "undershoot {}",
            ts[low]
        );
        let integral: f64 = h.iter().sum::<f64>() * dt;
        assert!((integral - 5.0 / 6.0).abs() < 1e-3, "integral {integral}");
        // Boxcar responses peak at 1 and later for longer boxcars.
        let (short, long) = (boxcar_response(0.0), boxcar_response(3.0));
        let at_peak = |r: &[f64]| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
        assert!((short[at_peak(&short)] - 1.0).abs() < 1e-12);
        assert!(at_peak(&long) > at_peak(&short));
    }

    fn trial(onset_s: f64) -> Trial {
        Trial {
            id: 0,
            onset_s,
            duration_s: 3.0,
            trial_type: "train".into(),
            stimulus: None,
        }
    }

    #[test]
    fn the_glm_recovers_known_betas_from_a_noise_free_series() {
        let (tr, n, degree) = (1.5, 90, 3);
        let trials: Vec<Trial> = (0..25).map(|i| trial(6.0 + 4.0 * i as f64)).collect();
        let times: Vec<f64> = (0..n).map(|k| k as f64 * tr).collect();
        let cols = trials.len() + degree + 1;
        let x = design_matrix(&times, &trials, degree).unwrap();
        let voxels = 7;
        let psc = |t: usize, v: usize| ((t * 7 + v * 3) as f64 * 0.9).sin() * 2.0 + 0.3;
        let baseline = |v: usize| 800.0 + 150.0 * v as f64;
        let mut series = vec![0.0f32; n * voxels];
        for r in 0..n {
            for v in 0..voxels {
                let mut y = baseline(v);
                for t in 0..trials.len() {
                    y += baseline(v) * psc(t, v) / 100.0 * x[r * cols + t];
                }
                // Drifts of every degree, up to a few percent.
                for d in 1..=degree {
                    y += (v as f64 - 3.0) * 4.0 / d as f64 * x[r * cols + trials.len() + d];
                }
                series[r * voxels + v] = y as f32;
            }
        }
        let op = least_squares_operator(&x, n, cols).unwrap();
        let (betas, skipped) = fit_psc(&op, n, cols, trials.len(), &series, voxels);
        assert_eq!(skipped, 0);
        for t in 0..trials.len() {
            for v in 0..voxels {
                let got = betas[t * voxels + v] as f64;
                // f32 samples of ~1000 limit agreement to ~1e-5 % signal change.
                assert!((got - psc(t, v)).abs() < 1e-4, "trial {t} voxel {v}: {got}");
            }
        }
    }

    #[test]
    fn drifts_are_cut_back_when_trials_fill_the_run() {
        // The simulator's runs: trials from the first kept volume to 12 s before the end.
        let times: Vec<f64> = (4..64).map(|k| k as f64 * 1.5).collect();
        let dense: Vec<Trial> = (0..19).map(|i| trial(6.0 + 4.0 * i as f64)).collect();
        let fits: Vec<f64> = (0..=3)
            .map(|d| Fit::new(&times, &dense, d).unwrap().trial_variance())
            .collect();
        assert!(fits[3] > 10.0 * fits[0], "{fits:?}");
        assert_eq!(Fit::auto(&times, &dense).unwrap().degree, 1);
        // 12 s of rest first: degree 3 is affordable.
        let rested: Vec<Trial> = (0..15).map(|i| trial(18.0 + 4.0 * i as f64)).collect();
        assert_eq!(Fit::auto(&times, &rested).unwrap().degree, 3);
    }

    #[test]
    fn a_trial_outside_the_run_or_a_duplicate_is_an_error() {
        let times: Vec<f64> = (0..40).map(|k| k as f64 * 2.0).collect();
        let late = [trial(10.0), trial(500.0)];
        let err = design_matrix(&times, &late, 2).unwrap_err();
        assert!(err.contains("onset 500 s"), "{err}");
        let twice = [trial(10.0), trial(20.0), trial(20.0)];
        let x = design_matrix(&times, &twice, 2).unwrap();
        assert_eq!(least_squares_operator(&x, times.len(), 6).unwrap_err(), 2);
        let err = Fit::new(&times, &twice, 2).err().unwrap();
        assert!(err.contains("onset 20 s"), "{err}");
    }
}
