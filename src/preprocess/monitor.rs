//! Live data-quality figures per volume, as the scanner console needs them: FIRMM's usable-data
//! bookkeeping (volumes and minutes with framewise displacement under each threshold, percent
//! usable, and the projected scan time to reach a target of usable minutes at the current
//! rate) and DVARS (the RMS over mask voxels of the change since the previous volume), raw and
//! standardised by the change each voxel's own running variability and lag-1 autocorrelation
//! predict (Nichols' standardisation, as fMRIPrep's `std_dvars`, with the statistics of the run
//! so far instead of the whole run's).
//!
//! It also flags a volume whose FD or standardised DVARS is over its limit (fMRIPrep's spike
//! criteria) and keeps each voxel's running tSNR (mean over standard deviation of the volumes
//! so far), reporting its median in each named voxel group (the ROI masks).
//!
//! Pure arithmetic on what preprocessing already has (FD, masked voxel values); it decides
//! nothing about volumes and draws nothing. The preprocessing stage feeds it each volume (the
//! detail mask's realigned voxels, or the whole volume without masks) and puts its figures on
//! the volume's report; the session sends them on as a `monitor` event.

/// What to count and where to aim.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    /// FD thresholds, mm (FIRMM's defaults: 0.2, 0.3, 0.5).
    pub fd_thresholds_mm: Vec<f32>,
    /// Usable minutes wanted at each threshold.
    pub target_minutes: f64,
    pub tr_s: f64,
    /// A volume with FD over this (mm) is flagged.
    pub fd_limit_mm: f32,
    /// A volume with standardised DVARS over this is flagged as a spike.
    pub std_dvars_limit: f32,
    /// Named subsets of the monitored voxels (indices into what `push` is given) whose median
    /// tSNR is reported; empty: the median over all of them, as "all".
    pub groups: Vec<(String, Vec<usize>)>,
}

/// The median running tSNR in one voxel group.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupTsnr {
    pub group: String,
    pub median: f32,
}

/// The usable-data figures at one FD threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ThresholdFigures {
    pub threshold_mm: f32,
    /// Volumes so far with FD at or under the threshold (the first volume, without FD, counts).
    pub volumes: u64,
    pub minutes: f64,
    pub percent: f64,
    /// Minutes of scanning in all, from the start, until `target_minutes` are usable at the
    /// rate so far; None while no volume is usable.
    pub projected_total_minutes: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MonitorFigures {
    /// Volumes monitored so far, this one included.
    pub volumes: u64,
    pub fd_mm: Option<f32>,
    pub dvars: Option<f32>,
    pub std_dvars: Option<f32>,
    /// FD over `fd_limit_mm`.
    pub fd_over_limit: bool,
    /// Standardised DVARS over `std_dvars_limit`.
    pub dvars_spike: bool,
    /// Per group; empty before three volumes (a standard deviation needs a few).
    pub tsnr: Vec<GroupTsnr>,
    pub thresholds: Vec<ThresholdFigures>,
}

pub struct Monitor {
    settings: MonitorSettings,
    volumes: u64,
    usable: Vec<u64>,
    previous: Option<Vec<f32>>,
    /// Per voxel, over the volumes so far: sum, sum of squares, and sum of products with the
    /// previous volume (f64: a run's worth of squares of raw intensities).
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    sum_lag: Vec<f64>,
    first: Vec<f64>,
    /// Volumes in those sums.
    in_statistics: u64,
}

impl Monitor {
    pub fn new(settings: MonitorSettings) -> Monitor {
        let n = settings.fd_thresholds_mm.len();
        Monitor {
            settings,
            volumes: 0,
            usable: vec![0; n],
            previous: None,
            sum: Vec::new(),
            sum_sq: Vec::new(),
            sum_lag: Vec::new(),
            first: Vec::new(),
            in_statistics: 0,
        }
    }

    /// Takes one volume's FD (None for the first) and its mask voxels (same order every volume).
    pub fn push(&mut self, fd_mm: Option<f32>, voxels: &[f32]) -> MonitorFigures {
        self.volumes += 1;
        for (count, &limit) in self.usable.iter_mut().zip(&self.settings.fd_thresholds_mm) {
            if fd_mm.is_none_or(|fd| fd <= limit) {
                *count += 1;
            }
        }
        let (dvars, std_dvars) = match &self.previous {
            Some(previous) if previous.len() == voxels.len() && !voxels.is_empty() => {
                let mean_sq = voxels
                    .iter()
                    .zip(previous)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    / voxels.len() as f64;
                let dvars = mean_sq.sqrt();
                let expected = self.expected_change();
                (
                    Some(dvars as f32),
                    expected.filter(|e| *e > 0.0).map(|e| (dvars / e) as f32),
                )
            }
            _ => (None, None),
        };
        self.update_statistics(voxels);
        let elapsed = self.minutes(self.volumes);
        let thresholds = self
            .settings
            .fd_thresholds_mm
            .iter()
            .zip(&self.usable)
            .map(|(&threshold_mm, &volumes)| {
                let minutes = self.minutes(volumes);
                let rate = volumes as f64 / self.volumes as f64;
                ThresholdFigures {
                    threshold_mm,
                    volumes,
                    minutes,
                    percent: 100.0 * rate,
                    projected_total_minutes: (volumes > 0).then(|| {
                        let missing = (self.settings.target_minutes - minutes).max(0.0);
                        elapsed + missing / rate
                    }),
                }
            })
            .collect();
        MonitorFigures {
            volumes: self.volumes,
            fd_mm,
            dvars,
            std_dvars,
            fd_over_limit: fd_mm.is_some_and(|fd| fd > self.settings.fd_limit_mm),
            dvars_spike: std_dvars.is_some_and(|s| s > self.settings.std_dvars_limit),
            tsnr: self.tsnr_medians(),
            thresholds,
        }
    }

    /// Each voxel's mean over its standard deviation (population, as MRIQC's tSNR), over the
    /// volumes so far; 0 where the voxel does not vary and is 0.
    pub fn tsnr(&self) -> Vec<f32> {
        let n = self.in_statistics as f64;
        (0..self.sum.len())
            .map(|v| {
                let mean = self.sum[v] / n;
                let var = (self.sum_sq[v] / n - mean * mean).max(0.0);
                let level = self.first[v] + mean;
                tsnr_of(level, var.sqrt())
            })
            .collect()
    }

    fn tsnr_medians(&self) -> Vec<GroupTsnr> {
        if self.in_statistics < 3 || self.sum.is_empty() {
            return Vec::new();
        }
        let map = self.tsnr();
        let median_of = |group: &str, values: Vec<f32>| GroupTsnr {
            group: group.to_string(),
            median: median(values),
        };
        if self.settings.groups.is_empty() {
            return vec![median_of("all", map)];
        }
        self.settings
            .groups
            .iter()
            .map(|(name, indices)| {
                let values = indices
                    .iter()
                    .filter_map(|&i| map.get(i).copied())
                    .collect();
                median_of(name, values)
            })
            .collect()
    }

    fn minutes(&self, volumes: u64) -> f64 {
        volumes as f64 * self.settings.tr_s / 60.0
    }

    /// The RMS change between successive volumes that each voxel's variance and lag-1
    /// autocorrelation so far predict: sqrt(mean over voxels of 2 var (1 - ar1)). None before
    /// three volumes.
    // Five parallel per-voxel arrays: an index reads better than a zip of five.
    #[allow(clippy::needless_range_loop)]
    fn expected_change(&self) -> Option<f64> {
        let n = self.in_statistics as f64; // this volume is not in them yet
        if n < 3.0 || self.sum.is_empty() {
            return None;
        }
        let last = self.previous.as_ref()?;
        let mut total = 0.0;
        for v in 0..self.sum.len() {
            let mean = self.sum[v] / n;
            let var = (self.sum_sq[v] / n - mean * mean).max(0.0);
            if var == 0.0 {
                continue;
            }
            // Lag-1 products were summed over n - 1 pairs; each side's own mean keeps the
            // estimate independent of the offset (the first volume is 0 after it).
            let later_mean = self.sum[v] / (n - 1.0);
            let earlier_mean = (self.sum[v] - (f64::from(last[v]) - self.first[v])) / (n - 1.0);
            let cov = self.sum_lag[v] / (n - 1.0) - later_mean * earlier_mean;
            let ar1 = (cov / var).clamp(-1.0, 1.0);
            total += 2.0 * var * (1.0 - ar1);
        }
        Some((total / self.sum.len() as f64).sqrt())
    }

    fn update_statistics(&mut self, voxels: &[f32]) {
        if self.sum.len() != voxels.len() {
            // The first volume (or a changed mask): start again from here.
            self.first = voxels.iter().map(|&v| f64::from(v)).collect();
            self.sum = vec![0.0; voxels.len()];
            self.sum_sq = vec![0.0; voxels.len()];
            self.sum_lag = vec![0.0; voxels.len()];
            self.previous = None;
            self.in_statistics = 0;
        }
        self.in_statistics += 1;
        for (v, &x) in voxels.iter().enumerate() {
            // Offset by the voxel's first value, so the variance does not cancel.
            let x = f64::from(x) - self.first[v];
            self.sum[v] += x;
            self.sum_sq[v] += x * x;
            if let Some(previous) = &self.previous {
                self.sum_lag[v] += x * (f64::from(previous[v]) - self.first[v]);
            }
        }
        self.previous = Some(voxels.to_vec());
    }
}

/// tSNR of a voxel with this mean and standard deviation; a flat voxel has none (0), not ∞.
pub fn tsnr_of(mean: f64, sd: f64) -> f32 {
    if sd > 0.0 {
        (mean / sd) as f32
    } else {
        0.0
    }
}

/// The median of finite values (the mean of the middle two for an even count); NaN for none.
pub fn median(mut values: Vec<f32>) -> f32 {
    values.retain(|v| v.is_finite());
    let n = values.len();
    if n == 0 {
        return f32::NAN;
    }
    values.sort_unstable_by(f32::total_cmp);
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor() -> Monitor {
        Monitor::new(MonitorSettings {
            fd_thresholds_mm: vec![0.2, 0.5],
            target_minutes: 1.0,
            tr_s: 2.0,
            fd_limit_mm: 0.5,
            std_dvars_limit: 1.5,
            groups: Vec::new(),
        })
    }

    #[test]
    fn usable_minutes_and_the_projected_scan_time_follow_firmm() {
        let mut m = monitor();
        let fds = [None, Some(0.1), Some(0.3), Some(0.6), Some(0.2)];
        let mut last = None;
        for fd in fds {
            last = Some(m.push(fd, &[1.0, 2.0]));
        }
        let f = last.unwrap();
        assert_eq!(f.volumes, 5);
        // Under 0.2: volumes 1, 2 and 5 (0.2 counts); under 0.5: all but the 0.6.
        let (t2, t5) = (&f.thresholds[0], &f.thresholds[1]);
        assert_eq!((t2.volumes, t5.volumes), (3, 4));
        assert!((t2.minutes - 0.1).abs() < 1e-12 && (t5.minutes - 4.0 * 2.0 / 60.0).abs() < 1e-12);
        assert!((t2.percent - 60.0).abs() < 1e-12 && (t5.percent - 80.0).abs() < 1e-12);
        // 10 s elapsed; 0.9 usable minutes to go at 60 % usable: 1.5 more minutes of scanning.
        let projected = t2.projected_total_minutes.unwrap();
        assert!(
            (projected - (10.0 / 60.0 + 0.9 / 0.6)).abs() < 1e-12,
            "{projected}"
        );
    }

    #[test]
    fn dvars_is_the_rms_change_and_std_dvars_divides_by_the_predicted_change() {
        let mut m = monitor();
        assert_eq!(m.push(None, &[0.0, 0.0]).dvars, None);
        // Changes (3, 4): RMS = sqrt((9 + 16) / 2).
        let f = m.push(Some(0.0), &[3.0, 4.0]);
        assert!((f.dvars.unwrap() - 12.5f32.sqrt()).abs() < 1e-6);
        assert_eq!(f.std_dvars, None, "too few volumes to predict a change");
        // Alternating values (+1, -1, +1 ...): variance 1, lag-1 autocorrelation -1 over the
        // volumes so far, so the predicted change is sqrt(2 · 1 · 2) = 2 and a change of 2 gives
        // std_dvars 1.
        let mut m = monitor();
        let mut last = None;
        for k in 0..6 {
            let v = if k % 2 == 0 { 1.0 } else { -1.0 };
            last = Some(m.push(Some(0.0), &[v, v]));
        }
        let f = last.unwrap();
        assert!((f.dvars.unwrap() - 2.0).abs() < 1e-6);
        let s = f.std_dvars.unwrap();
        assert!((s - 1.0).abs() < 0.1, "{s}");
    }

    /// Values from `tests/fixtures/monitor/reference.py` (NumPy, written from the definitions).
    #[test]
    // The voxel values are printed by NumPy to 4 decimals, more than f32 holds at 1000.
    #[allow(clippy::excessive_precision)]
    fn dvars_and_std_dvars_equal_numpys_on_a_drifting_noisy_run() {
        const VOXELS: [[f32; 4]; 9] = [
            [999.8411, 1005.3182, 996.2596, 996.7697],
            [999.1920, 998.2402, 993.2327, 1001.7296],
            [1003.9572, 988.3241, 1005.1245, 1003.0163],
            [994.2719, 1003.2706, 1004.5511, 998.5090],
            [993.8192, 994.7791, 994.0922, 1004.0514],
            [987.5889, 994.5266, 998.4264, 998.0723],
            [989.4074, 988.3130, 984.3198, 993.8986],
            [985.3497, 989.9885, 983.5869, 1004.1274],
            [978.6930, 984.5698, 985.5103, 986.0166],
        ];
        const EXPECTED: [(f64, Option<f64>); 8] = [
            (4.590265, None),
            (8.125680, None),
            (9.190313, Some(1.487166)),
            (7.287271, Some(0.985063)),
            (4.832580, Some(0.662750)),
            (8.036350, Some(1.148249)),
            (5.577583, Some(0.739074)),
            (10.066957, Some(1.400862)),
        ];
        let mut m = monitor();
        assert_eq!(m.push(None, &VOXELS[0]).dvars, None);
        for (k, (dvars, std)) in EXPECTED.iter().enumerate() {
            let f = m.push(Some(0.0), &VOXELS[k + 1]);
            let got = f64::from(f.dvars.unwrap());
            assert!(
                (got - dvars).abs() <= 1e-4 * dvars,
                "volume {}: {got} vs {dvars}",
                k + 2
            );
            match (f.std_dvars, std) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    assert!(
                        (f64::from(a) - b).abs() <= 1e-3 * b,
                        "volume {}: {a} vs {b}",
                        k + 2
                    )
                }
                other => panic!("volume {}: {other:?}", k + 2),
            }
        }
    }
}
