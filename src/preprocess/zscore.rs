//! Rolling per-voxel z-scores: each new volume is scored against the recent history of every
//! voxel, so slow drifts and scanner differences are normalised away as the run goes.
//!
//! Windowed mode keeps the last W volumes in one fixed-capacity, volume-major ring (a single
//! allocation for all voxels, which a per-voxel ring buffer crate would not give) and updates
//! sums in O(1) per voxel; until W volumes have been seen the statistics are cumulative (the
//! warm-up). Exponential mode weights the past by a half-life. Sums are f64 on values offset by
//! each voxel's first value, so variance does not suffer cancellation. A voxel whose SD is ~0
//! scores 0 and is counted; so does a NaN/Inf value, for which the window's mean enters the
//! sums (a NaN there would stay for the rest of the run). Optional linear detrending within the
//! window. This module does not decide which volumes to skip (dummy scans, missing volumes):
//! its caller does.

// Per-voxel loops walk several parallel arrays at once: an index reads better than a zip of five.
#![allow(clippy::needless_range_loop)]

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ZMode {
    /// The last `n` volumes.
    Window(usize),
    /// Exponential weights with this half-life in volumes.
    Exponential(f64),
}

pub struct RollingZ {
    n: usize,
    mode: ZMode,
    detrend: bool,
    /// Window mode: capacity x n values (offset-subtracted), volume-major.
    ring: Vec<f32>,
    /// Acquisition counter of each ring slot (for detrending).
    ring_k: Vec<f64>,
    head: usize,
    len: usize,
    offset: Vec<f32>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    sum_kx: Vec<f64>,
    /// Exponential mode: running mean and variance.
    mean: Vec<f64>,
    var: Vec<f64>,
    seen: u64,
    /// Voxel-scores set to 0 because the SD was ~0.
    pub guarded: u64,
}

impl RollingZ {
    pub fn new(n_voxels: usize, mode: ZMode, detrend: bool) -> RollingZ {
        let capacity = match mode {
            ZMode::Window(w) => w.max(2),
            ZMode::Exponential(_) => 0,
        };
        RollingZ {
            n: n_voxels,
            mode,
            detrend: detrend && matches!(mode, ZMode::Window(_)),
            ring: touched_zeros(capacity * n_voxels),
            ring_k: vec![0.0; capacity],
            head: 0,
            len: 0,
            offset: Vec::new(),
            sum: touched_zeros(n_voxels),
            sum_sq: touched_zeros(n_voxels),
            sum_kx: touched_zeros(n_voxels),
            mean: touched_zeros(n_voxels),
            var: touched_zeros(n_voxels),
            seen: 0,
            guarded: 0,
        }
    }

    /// Volumes that have entered the statistics.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Whether the warm-up is over (a full window, or one half-life times three).
    pub fn warmed_up(&self) -> bool {
        match self.mode {
            ZMode::Window(w) => self.len >= w.max(2),
            ZMode::Exponential(h) => self.seen as f64 >= 3.0 * h,
        }
    }

    /// Adds `values` (one per voxel, in order) and writes their z-scores into `out`; its time
    /// position is the count of volumes pushed so far.
    pub fn push(&mut self, values: &[f32], out: &mut Vec<f32>) {
        self.push_at(values, self.seen as f64, out);
    }

    /// Adds a late volume to the statistics without scoring it: it arrived after its slot was
    /// declared missing, so it scores nothing, but the baseline of later volumes should include
    /// it. `k` is its acquisition position (used by the detrend), as for `push_at`.
    pub fn absorb(&mut self, values: &[f32], k: f64) {
        let guarded = self.guarded;
        let mut scratch = Vec::new();
        self.push_at(values, k, &mut scratch);
        self.guarded = guarded;
    }

    /// `push` with the volume's acquisition position `k` (volumes since the start of the run),
    /// so that a missing volume leaves a gap in the detrend's time axis.
    pub fn push_at(&mut self, values: &[f32], k: f64, out: &mut Vec<f32>) {
        assert_eq!(
            values.len(),
            self.n,
            "rolling z-score fed a vector of the wrong length"
        );
        if self.offset.is_empty() {
            self.offset = values
                .iter()
                .map(|&x| if x.is_finite() { x } else { 0.0 })
                .collect();
        }
        out.clear();
        out.reserve(self.n);
        self.seen += 1;
        match self.mode {
            ZMode::Window(w) => self.push_window(values, k, w.max(2), out),
            ZMode::Exponential(h) => self.push_exponential(values, h, out),
        }
    }

    fn push_window(&mut self, values: &[f32], k: f64, capacity: usize, out: &mut Vec<f32>) {
        if !self.detrend {
            self.push_window_plain(values, k, capacity, out);
            return;
        }
        let n = self.n;
        let slot = self.head;
        let detrend = self.detrend;
        // Slices of equal length up front, so the loops below compile without bounds checks.
        let (sum, sum_sq, sum_kx) = (
            &mut self.sum[..n],
            &mut self.sum_sq[..n],
            &mut self.sum_kx[..n],
        );
        let (values, offset) = (&values[..n], &self.offset[..n]);
        if self.len == capacity {
            let old_k = self.ring_k[slot];
            let old = &self.ring[slot * n..(slot + 1) * n];
            for v in 0..n {
                let x = old[v] as f64;
                sum[v] -= x;
                sum_sq[v] -= x * x;
            }
            if detrend {
                for v in 0..n {
                    sum_kx[v] -= old_k * old[v] as f64;
                }
            }
        } else {
            self.len += 1;
        }
        self.ring_k[slot] = k;
        let new = &mut self.ring[slot * n..(slot + 1) * n];
        // The sums now hold the window without the slot being written.
        let inv_rest = recip_or_zero(self.len - 1);
        for v in 0..n {
            let x = finite_or(values[v] - offset[v], (sum[v] * inv_rest) as f32);
            new[v] = x;
            let x = x as f64;
            sum[v] += x;
            sum_sq[v] += x * x;
        }
        if detrend {
            for v in 0..n {
                sum_kx[v] += k * new[v] as f64;
            }
        }
        self.head = (self.head + 1) % capacity;
        let m = self.len as f64;
        // Sums of k and k² over the slots in the window.
        let (mut sk, mut skk) = (0.0f64, 0.0f64);
        for &kk in self.ring_k.iter().take(self.len) {
            sk += kk;
            skk += kk * kk;
        }
        let det = m * skk - sk * sk;
        let new = &self.ring[slot * n..(slot + 1) * n];
        out.resize(n, 0.0);
        let mut guarded = 0u64;
        if detrend && self.len >= 3 && det.abs() > 1e-9 {
            let dof = m - 2.0;
            for v in 0..n {
                let (s, ss, skx) = (sum[v], sum_sq[v], sum_kx[v]);
                let b = (m * skx - sk * s) / det;
                let a = (s - b * sk) / m;
                let sse = (ss - a * s - b * skx).max(0.0);
                let fit = a + b * k;
                let (z, g) = zscore(
                    new[v] as f64 - fit,
                    sse / dof,
                    fit + offset[v] as f64,
                    values[v].is_finite(),
                );
                out[v] = z;
                guarded += g as u64;
            }
        } else {
            let inv_m = 1.0 / m;
            for v in 0..n {
                let mean = sum[v] * inv_m;
                let variance = (sum_sq[v] * inv_m - mean * mean).max(0.0);
                let (z, g) = zscore(
                    new[v] as f64 - mean,
                    variance,
                    mean + offset[v] as f64,
                    values[v].is_finite(),
                );
                out[v] = z;
                guarded += g as u64;
            }
        }
        self.guarded += guarded;
    }

    /// The window without detrending, in one pass per voxel: the evicted value out of the
    /// sums, the new one in, the score out, while each voxel's sums are in a register.
    fn push_window_plain(&mut self, values: &[f32], k: f64, capacity: usize, out: &mut Vec<f32>) {
        let n = self.n;
        let slot = self.head;
        // Until the window is full, the slot being written has never been written: it still
        // holds its initial 0.0, so "evicting" it is a no-op and the loop needs no branch.
        let inv_before = recip_or_zero(self.len);
        if self.len < capacity {
            self.len += 1;
        }
        self.ring_k[slot] = k;
        self.head = (self.head + 1) % capacity;
        out.resize(n, 0.0);
        let lanes = WindowLanes {
            ring: &mut self.ring[slot * n..(slot + 1) * n],
            sum: &mut self.sum[..n],
            sum_sq: &mut self.sum_sq[..n],
            values: &values[..n],
            offset: &self.offset[..n],
            out: &mut out[..n],
        };
        self.guarded += score_window(lanes, 1.0 / self.len as f64, inv_before);
    }

    fn push_exponential(&mut self, values: &[f32], half_life: f64, out: &mut Vec<f32>) {
        let alpha_steady = 1.0 - 0.5f64.powf(1.0 / half_life.max(1e-3));
        // Warm-up: a plain cumulative mean until the exponential weight takes over.
        let alpha = alpha_steady.max(1.0 / self.seen as f64);
        let n = self.n;
        out.resize(n, 0.0);
        let (mean, var, out) = (&mut self.mean[..n], &mut self.var[..n], &mut out[..n]);
        let (values, offset) = (&values[..n], &self.offset[..n]);
        let mut guarded = 0u64;
        for v in 0..n {
            let finite = values[v].is_finite();
            let x = finite_or(values[v] - offset[v], mean[v] as f32) as f64;
            let delta = x - mean[v];
            let m = mean[v] + alpha * delta;
            let s2 = (1.0 - alpha) * (var[v] + alpha * delta * delta);
            mean[v] = m;
            var[v] = s2;
            let (z, g) = zscore(x - m, s2, m + offset[v] as f64, finite);
            out[v] = z;
            guarded += g as u64;
        }
        self.guarded += guarded;
    }
}

/// `len` zeros written now, not left to the allocator: a zeroed allocation of this size is
/// mapped lazily, and each page's first write would then fault during the first W volumes of
/// the run instead of here at start-up (measured: the ring's first fill ran 3x slower).
fn touched_zeros<T: Copy + Default>(len: usize) -> Vec<T> {
    let mut values = Vec::with_capacity(len);
    values.resize(len, T::default());
    values
}

/// The arrays one windowed (no detrend) update walks, all of one voxel count.
struct WindowLanes<'a> {
    /// The ring slot being replaced (the evicted values in, the new ones out).
    ring: &'a mut [f32],
    sum: &'a mut [f64],
    sum_sq: &'a mut [f64],
    values: &'a [f32],
    offset: &'a [f32],
    out: &'a mut [f32],
}

/// Updates the sums and scores every voxel; returns how many were guarded (SD ~0, or a NaN/Inf
/// value). `inv_m` is 1 / the window's count with the new volume, `inv_before` 1 / its count
/// before (0 when empty). A volume with no NaN/Inf value (nearly all of them; one pass tells)
/// takes a loop without the stand-in's cost. Each loop has a copy compiled for AVX2, picked
/// where the CPU has it: this is the per-volume hot path, and the x86-64 baseline (SSE2) gives
/// it half the vector width. The copies round identically (no fused multiply-add is allowed to
/// form), so results do not depend on the CPU.
fn score_window(lanes: WindowLanes, inv_m: f64, inv_before: f64) -> u64 {
    let all_finite = lanes
        .values
        .iter()
        .fold(true, |all, value| all & value.is_finite());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked for AVX2, the only feature the copies assume.
            return unsafe {
                if all_finite {
                    score_window_avx2::<true>(lanes, inv_m, inv_before)
                } else {
                    score_window_avx2::<false>(lanes, inv_m, inv_before)
                }
            };
        }
    }
    if all_finite {
        score_window_lanes::<true>(lanes, inv_m, inv_before)
    } else {
        score_window_lanes::<false>(lanes, inv_m, inv_before)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn score_window_avx2<const ALL_FINITE: bool>(
    lanes: WindowLanes,
    inv_m: f64,
    inv_before: f64,
) -> u64 {
    score_window_lanes::<ALL_FINITE>(lanes, inv_m, inv_before)
}

/// The loop itself, branch-free so that it vectorises: every lane computes its score and the
/// guard selects 0 where the SD is ~0. `ALL_FINITE` promises no NaN/Inf in `values`.
#[inline(always)]
fn score_window_lanes<const ALL_FINITE: bool>(
    lanes: WindowLanes,
    inv_m: f64,
    inv_before: f64,
) -> u64 {
    let WindowLanes {
        ring,
        sum,
        sum_sq,
        values,
        offset,
        out,
    } = lanes;
    let n = ring.len();
    let (sum, sum_sq, values, offset, out) = (
        &mut sum[..n],
        &mut sum_sq[..n],
        &values[..n],
        &offset[..n],
        &mut out[..n],
    );
    let mut guarded = 0u64;
    for v in 0..n {
        let old = ring[v] as f64;
        let finite = ALL_FINITE || values[v].is_finite();
        let x = if ALL_FINITE {
            values[v] - offset[v]
        } else {
            finite_or(values[v] - offset[v], (sum[v] * inv_before) as f32)
        };
        ring[v] = x;
        let x = x as f64;
        let s = sum[v] - old + x;
        let ss = sum_sq[v] - old * old + x * x;
        sum[v] = s;
        sum_sq[v] = ss;
        let mean = s * inv_m;
        let variance = (ss * inv_m - mean * mean).max(0.0);
        let (z, g) = zscore(x - mean, variance, mean + offset[v] as f64, finite);
        out[v] = z;
        guarded += g as u64;
    }
    guarded
}

/// A NaN or Inf voxel value must not enter the sums, where it would stay for the rest of the
/// run: the window's mean (`fallback`) stands in for it, and `zscore` scores it 0, guarded.
#[inline(always)]
fn finite_or(value: f32, fallback: f32) -> f32 {
    if value.is_finite() {
        value
    } else {
        fallback
    }
}

/// 1 / `count`, or 0 for an empty window (whose sums are all 0).
fn recip_or_zero(count: usize) -> f64 {
    if count == 0 {
        0.0
    } else {
        1.0 / count as f64
    }
}

/// The z-score of a deviation, and whether 0 was returned instead: the SD was ~0 (relative to
/// the voxel's level, or absolutely for a voxel near zero, or NaN), or the voxel's value was
/// not `finite` (a stand-in took its place in the sums; see `finite_or`).
#[inline(always)]
fn zscore(deviation: f64, variance: f64, level: f64, finite: bool) -> (f32, bool) {
    // The sums need f64; the square root and the division do not (the score is an f32), and in
    // f32 they vectorise twice as wide. Both sides are computed and one is selected, so the
    // caller's loop has no branch; a NaN SD fails the comparison and is guarded.
    let sd = (variance as f32).sqrt();
    let usable = finite && sd > 1e-6 * (level as f32).abs().max(1.0);
    let score = (deviation as f32) / sd;
    (if usable { score } else { 0.0 }, !usable)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The z-score of the last value of `xs` against all of `xs` (population SD).
    fn naive(xs: &[f64]) -> f64 {
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        (xs[xs.len() - 1] - m) / sd
    }

    #[test]
    fn window_matches_a_naive_computation_through_warm_up_and_wrap_around() {
        let series: Vec<f64> = (0..40)
            .map(|k| 1000.0 + 5.0 * ((k * 7 % 11) as f64) - 0.3 * k as f64)
            .collect();
        let mut z = RollingZ::new(1, ZMode::Window(8), false);
        let mut out = Vec::new();
        for k in 0..series.len() {
            z.push(&[series[k] as f32], &mut out);
            if k == 0 {
                assert_eq!(out[0], 0.0, "one value has no spread");
                continue;
            }
            let window = &series[k.saturating_sub(7)..=k];
            assert!(
                (out[0] as f64 - naive(window)).abs() < 1e-4,
                "volume {k}: {} vs {}",
                out[0],
                naive(window)
            );
        }
        assert!(z.warmed_up());
        assert_eq!(z.guarded, 1);
    }

    #[test]
    fn the_dispatched_loop_and_the_portable_loop_agree_bit_for_bit() {
        // Voxels of every kind: drifting, noisy, constant, near zero, NaN. Several volumes
        // through the same state on both paths (AVX2 where this CPU has it).
        let n = 1003;
        let value = |v: usize, k: usize| -> f32 {
            match v % 5 {
                0 => 1000.0 + 3.0 * k as f32 + ((v * 31 + k * 17) % 23) as f32,
                1 => ((v * 7 + k * 13) % 19) as f32 * 0.37 - 3.0,
                2 => 512.0,
                3 => 1e-4 * ((v + k) % 3) as f32,
                _ if k == 3 => f32::NAN,
                _ => 40.0 + (k % 4) as f32,
            }
        };
        let (mut ring_a, mut sum_a, mut sq_a) = (vec![0f32; n], vec![0f64; n], vec![0f64; n]);
        let (mut ring_b, mut sum_b, mut sq_b) = (ring_a.clone(), sum_a.clone(), sq_a.clone());
        let offset: Vec<f32> = (0..n).map(|v| value(v, 0)).collect();
        let (mut out_a, mut out_b) = (vec![0f32; n], vec![0f32; n]);
        for k in 0..6 {
            let values: Vec<f32> = (0..n).map(|v| value(v, k)).collect();
            let inv_m = 1.0 / (k + 1) as f64;
            let inv_before = recip_or_zero(k);
            let guarded_a = score_window(
                WindowLanes {
                    ring: &mut ring_a,
                    sum: &mut sum_a,
                    sum_sq: &mut sq_a,
                    values: &values,
                    offset: &offset,
                    out: &mut out_a,
                },
                inv_m,
                inv_before,
            );
            let all_finite = values.iter().all(|v| v.is_finite());
            let portable = if all_finite {
                score_window_lanes::<true>
            } else {
                score_window_lanes::<false>
            };
            let guarded_b = portable(
                WindowLanes {
                    ring: &mut ring_b,
                    sum: &mut sum_b,
                    sum_sq: &mut sq_b,
                    values: &values,
                    offset: &offset,
                    out: &mut out_b,
                },
                inv_m,
                inv_before,
            );
            assert_eq!(guarded_a, guarded_b, "volume {k}");
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&out_a), bits(&out_b), "volume {k}");
            assert!(out_a.iter().all(|z| z.is_finite()), "volume {k}");
        }
        assert!(out_a[0] != 0.0 && out_a[1] != 0.0);
        assert_eq!(out_a[2], 0.0);
    }

    #[test]
    fn a_nan_value_scores_zero_is_counted_and_does_not_poison_the_voxel() {
        // Voxel 0: 0, 1, 2, NaN, 5. The NaN scores 0 and is counted; the window's mean (1)
        // stands in for it, so 5 is scored against [0, 1, 2, 1, 5].
        let series = [0.0f32, 1.0, 2.0, f32::NAN, 5.0];
        for mode in [ZMode::Window(8), ZMode::Exponential(50.0)] {
            for detrend in [false, true] {
                let mut z = RollingZ::new(2, mode, detrend);
                let mut out = Vec::new();
                for (k, &x) in series.iter().enumerate() {
                    let guarded = z.guarded;
                    z.push(&[x, 10.0 + (k % 2) as f32], &mut out);
                    if k == 3 {
                        assert_eq!(out[0], 0.0, "{mode:?} detrend {detrend}");
                        assert_eq!(z.guarded, guarded + 1, "{mode:?} detrend {detrend}");
                    }
                    assert!(out[1].is_finite() && out[1] != 0.0 || k == 0);
                }
                // 5 stands well above the history (with the detrend, above its rising line).
                assert!(
                    out[0].is_finite() && out[0] > 0.5,
                    "{mode:?} detrend {detrend}: {}",
                    out[0]
                );
                if mode == ZMode::Window(8) && !detrend {
                    let expected = naive(&[0.0, 1.0, 2.0, 1.0, 5.0]) as f32;
                    assert!((out[0] - expected).abs() < 1e-5, "{} vs {expected}", out[0]);
                }
            }
        }
        // A NaN in the very first volume: the offset is not poisoned either.
        let mut z = RollingZ::new(1, ZMode::Window(4), false);
        let mut out = Vec::new();
        for x in [f32::NAN, 3.0, 4.0, 8.0] {
            z.push(&[x], &mut out);
        }
        assert!(out[0].is_finite() && out[0] > 1.0, "{}", out[0]);
    }

    #[test]
    fn constant_voxels_score_zero_and_are_counted() {
        let mut z = RollingZ::new(2, ZMode::Window(5), false);
        let mut out = Vec::new();
        for k in 0..6 {
            z.push(&[7.0, k as f32], &mut out);
        }
        assert_eq!(out[0], 0.0);
        assert!(out[1] > 1.0);
        assert_eq!(z.guarded, 6 + 1);
    }

    #[test]
    fn detrending_removes_a_linear_drift() {
        let mut plain = RollingZ::new(1, ZMode::Window(20), false);
        let mut detrended = RollingZ::new(1, ZMode::Window(20), true);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for k in 0..60 {
            // A steep drift plus a small alternating signal.
            let x = 500.0 + 2.0 * k as f32 + if k % 2 == 0 { 0.5 } else { -0.5 };
            plain.push(&[x], &mut a);
            detrended.push(&[x], &mut b);
        }
        // Without detrending the newest value always looks high; with it, it is ±1-ish.
        assert!(a[0] > 1.5, "{}", a[0]);
        assert!(b[0].abs() < 1.5 && b[0].abs() > 0.5, "{}", b[0]);
    }

    #[test]
    fn exponential_mode_normalises_a_stationary_signal() {
        let mut z = RollingZ::new(1, ZMode::Exponential(20.0), false);
        let mut out = Vec::new();
        let mut scores = Vec::new();
        let mut state = 12345u64;
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            z.push(&[(800.0 + 10.0 * (u - 0.5)) as f32], &mut out);
            if z.warmed_up() {
                scores.push(out[0] as f64);
            }
        }
        let m = scores.iter().sum::<f64>() / scores.len() as f64;
        let sd = (scores.iter().map(|s| (s - m).powi(2)).sum::<f64>() / scores.len() as f64).sqrt();
        assert!(
            m.abs() < 0.1 && (sd - 1.0).abs() < 0.15,
            "mean {m}, sd {sd}"
        );
    }

    #[test]
    fn an_absorbed_late_volume_joins_the_baseline_without_a_score() {
        // Series 0..6 with volume 3 late: absorbing it after volume 4 must give volume 5 the
        // same score as in an on-time run (windowed, no detrend: order within the window is
        // irrelevant).
        let series = [10.0f32, 12.0, 9.0, 30.0, 11.0, 13.0];
        let mut on_time = RollingZ::new(1, ZMode::Window(10), false);
        let mut late = RollingZ::new(1, ZMode::Window(10), false);
        let mut without = RollingZ::new(1, ZMode::Window(10), false);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for (k, &x) in series.iter().enumerate() {
            on_time.push_at(&[x], k as f64, &mut a);
        }
        for k in [0usize, 1, 2, 4] {
            late.push_at(&[series[k]], k as f64, &mut b);
            without.push_at(&[series[k]], k as f64, &mut c);
        }
        late.absorb(&[series[3]], 3.0);
        late.push_at(&[series[5]], 5.0, &mut b);
        without.push_at(&[series[5]], 5.0, &mut c);
        assert!((a[0] - b[0]).abs() < 1e-6, "{} vs {}", a[0], b[0]);
        assert!(
            (a[0] - c[0]).abs() > 0.1,
            "the late volume must change the baseline"
        );
        assert_eq!(late.seen(), 6);
    }

    #[test]
    fn the_detrend_uses_acquisition_positions() {
        // An exact linear drift with volume 5 missing: on acquisition positions every value sits
        // on the fitted line (no residual: scored 0 and counted as guarded); on the push counter
        // the gap bends the fit and the newest value scores well away from 0.
        let mut with_k = RollingZ::new(1, ZMode::Window(20), true);
        let mut counter = RollingZ::new(1, ZMode::Window(20), true);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for k in (0..12).filter(|&k| k != 5) {
            let x = 100.0 + 3.0 * k as f32;
            with_k.push_at(&[x], k as f64, &mut a);
            counter.push(&[x], &mut b);
        }
        assert_eq!(a[0], 0.0);
        assert!(b[0].abs() > 0.5, "{}", b[0]);
    }
}
