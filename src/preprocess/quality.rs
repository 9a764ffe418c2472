//! What the post-run report needs beyond the per-volume figures: the whole volume's running
//! tSNR map (`TsnrMap`) and the carpet plot's rows (`CarpetLayout`: which mask voxels, in which
//! ROI group order, at most a few thousand so a long run stays small), gathered by the
//! preprocessing stage and handed on once at the end as `QualityMaps`.
//!
//! `RunQuality` is the one thing the stage holds: it feeds the monitor, the map and the
//! carpet from each volume.
//!
//! Arithmetic only: it writes no file (the recorder does) and draws nothing (the report does).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::config::MonitorConfig;
use crate::ingest::Geometry;
use crate::preprocess::masks::Masks;
use crate::preprocess::monitor::{tsnr_of, Monitor, MonitorFigures, MonitorSettings};

/// Carpet rows kept at most: enough to see structure in a plot a few hundred pixels tall.
pub const CARPET_MAX_VOXELS: usize = 2000;

/// One ROI group's rows in the carpet, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarpetGroup {
    pub name: String,
    pub rows: usize,
}

/// Which voxels make the carpet's rows (flat volume indices), grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct CarpetLayout {
    pub voxels: Vec<usize>,
    pub groups: Vec<CarpetGroup>,
}

impl CarpetLayout {
    /// Low-level visual voxels first, then high-level ones, each thinned evenly so that the
    /// whole is at most `CARPET_MAX_VOXELS` rows.
    pub fn from_masks(masks: &Masks) -> CarpetLayout {
        let high: HashSet<usize> = masks.semantic.iter().copied().collect();
        let low: Vec<usize> = masks
            .detail
            .iter()
            .copied()
            .filter(|v| !high.contains(v))
            .collect();
        let total = low.len() + masks.semantic.len();
        let step = total.div_ceil(CARPET_MAX_VOXELS).max(1);
        let mut layout = CarpetLayout {
            voxels: Vec::new(),
            groups: Vec::new(),
        };
        for (name, group) in [
            ("low-level visual", &low),
            ("high-level visual", &masks.semantic),
        ] {
            let before = layout.voxels.len();
            layout.voxels.extend(group.iter().step_by(step));
            let rows = layout.voxels.len() - before;
            if rows > 0 {
                layout.groups.push(CarpetGroup {
                    name: name.into(),
                    rows,
                });
            }
        }
        layout
    }

    /// Without masks: the voxels brighter than the first volume's mean (the head, roughly),
    /// thinned the same way.
    pub fn from_intensity(first: &[f32]) -> CarpetLayout {
        let finite = first.iter().filter(|v| v.is_finite());
        let (sum, n) = finite.fold((0.0f64, 0usize), |(s, n), &v| (s + f64::from(v), n + 1));
        let mean = if n == 0 { 0.0 } else { sum / n as f64 };
        let bright: Vec<usize> = (0..first.len())
            .filter(|&i| f64::from(first[i]) > mean)
            .collect();
        let step = bright.len().div_ceil(CARPET_MAX_VOXELS).max(1);
        let voxels: Vec<usize> = bright.into_iter().step_by(step).collect();
        let groups = vec![CarpetGroup {
            name: "above-mean intensity".into(),
            rows: voxels.len(),
        }];
        CarpetLayout { voxels, groups }
    }

    pub fn row(&self, volume: &[f32]) -> Vec<f32> {
        self.voxels
            .iter()
            .map(|&i| volume.get(i).copied().unwrap_or(f32::NAN))
            .collect()
    }
}

/// Each voxel's running mean and variance over the run (offset by its first value so the
/// variance does not cancel in f64 sums of squares).
#[derive(Debug, Default)]
pub struct TsnrMap {
    first: Vec<f32>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    volumes: u64,
}

impl TsnrMap {
    pub fn push(&mut self, volume: &[f32]) {
        if self.first.len() != volume.len() {
            *self = TsnrMap {
                first: volume.to_vec(),
                sum: vec![0.0; volume.len()],
                sum_sq: vec![0.0; volume.len()],
                volumes: 0,
            };
        }
        for (v, &x) in volume.iter().enumerate() {
            let x = f64::from(x) - f64::from(self.first[v]);
            self.sum[v] += x;
            self.sum_sq[v] += x * x;
        }
        self.volumes += 1;
    }

    pub fn volumes(&self) -> u64 {
        self.volumes
    }

    /// Mean over (population) standard deviation per voxel; 0 where a voxel is constant.
    pub fn map(&self) -> Vec<f32> {
        let n = self.volumes.max(1) as f64;
        (0..self.sum.len())
            .map(|v| {
                let mean = self.sum[v] / n;
                let var = (self.sum_sq[v] / n - mean * mean).max(0.0);
                tsnr_of(f64::from(self.first[v]) + mean, var.sqrt())
            })
            .collect()
    }
}

/// The run's maps, once, after its last volume.
#[derive(Debug, Clone)]
pub struct QualityMaps {
    pub geometry: Geometry,
    /// The tSNR of every voxel over the run's preprocessed volumes.
    pub tsnr: Vec<f32>,
    pub volumes: u64,
    /// The carpet's groups, in row order (its rows came with each volume).
    pub carpet_groups: Vec<CarpetGroup>,
}

/// The monitor, the tSNR map and the carpet of one run.
pub struct RunQuality {
    config: MonitorConfig,
    /// Named subsets of the monitored voxels (see `MonitorSettings::groups`).
    groups: Vec<(String, Vec<usize>)>,
    monitor: Option<Monitor>,
    carpet: Option<CarpetLayout>,
    tsnr: TsnrMap,
    geometry: Option<Geometry>,
}

impl RunQuality {
    /// With masks, the monitor gets the detail voxels and reports tSNR for "detail" (all of
    /// them) and "semantic" (the high-level ones among them).
    pub fn new(config: MonitorConfig, masks: Option<&Masks>) -> RunQuality {
        let mut groups = Vec::new();
        let mut carpet = None;
        if let Some(masks) = masks {
            let position: HashMap<usize, usize> = masks
                .detail
                .iter()
                .enumerate()
                .map(|(k, &v)| (v, k))
                .collect();
            let semantic = masks
                .semantic
                .iter()
                .filter_map(|v| position.get(v).copied())
                .collect();
            groups.push(("detail".to_string(), (0..masks.detail.len()).collect()));
            groups.push(("semantic".to_string(), semantic));
            carpet = Some(CarpetLayout::from_masks(masks));
        }
        RunQuality {
            config,
            groups,
            monitor: None,
            carpet,
            tsnr: TsnrMap::default(),
            geometry: None,
        }
    }

    /// One preprocessed volume: its FD, the monitored voxels (detail mask, or the volume), the
    /// whole volume and the TR. Returns the monitor's figures and the volume's carpet row.
    pub fn push(
        &mut self,
        fd_mm: Option<f32>,
        monitored: &[f32],
        volume: &[f32],
        geometry: &Geometry,
        tr_s: f64,
    ) -> (MonitorFigures, Arc<[f32]>) {
        let c = &self.config;
        let groups = &self.groups;
        let monitor = self.monitor.get_or_insert_with(|| {
            Monitor::new(MonitorSettings {
                fd_thresholds_mm: c.fd_thresholds_mm.clone(),
                target_minutes: c.target_minutes,
                tr_s,
                fd_limit_mm: c.fd_limit_mm,
                std_dvars_limit: c.std_dvars_limit,
                groups: groups.clone(),
            })
        });
        let figures = monitor.push(fd_mm, monitored);
        self.tsnr.push(volume);
        let carpet = self
            .carpet
            .get_or_insert_with(|| CarpetLayout::from_intensity(volume));
        self.geometry.get_or_insert_with(|| geometry.clone());
        (figures, carpet.row(volume).into())
    }

    /// The run's maps, after at least one volume.
    pub fn finish(&self) -> Option<QualityMaps> {
        Some(QualityMaps {
            geometry: self.geometry.clone()?,
            tsnr: self.tsnr.map(),
            volumes: self.tsnr.volumes(),
            carpet_groups: self.carpet.as_ref()?.groups.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsnr_map_is_mean_over_population_sd_per_voxel() {
        let mut map = TsnrMap::default();
        // Voxel 0: 10, 12, 14 → mean 12, sd sqrt(8/3); voxel 1 constant → 0.
        for (a, b) in [(10.0, 5.0), (12.0, 5.0), (14.0, 5.0)] {
            map.push(&[a, b]);
        }
        let m = map.map();
        let expected = 12.0 / (8.0f64 / 3.0).sqrt();
        assert!((f64::from(m[0]) - expected).abs() < 1e-5, "{m:?}");
        assert_eq!(m[1], 0.0);
        assert_eq!(map.volumes(), 3);
    }

    #[test]
    fn the_carpet_keeps_the_brighter_voxels_in_order_and_thins_them() {
        let first = [0.0, 10.0, 0.0, 9.0, 8.0];
        let layout = CarpetLayout::from_intensity(&first);
        assert_eq!(layout.voxels, vec![1, 3, 4]);
        assert_eq!(layout.row(&[1.0, 2.0, 3.0, 4.0, 5.0]), vec![2.0, 4.0, 5.0]);
        let many: Vec<f32> = (0..10_000).map(|i| (i % 2) as f32).collect();
        let thinned = CarpetLayout::from_intensity(&many);
        assert_eq!(thinned.voxels.len(), 1667, "5000 bright voxels, every 3rd");
        assert!(thinned.voxels.len() <= CARPET_MAX_VOXELS);
        assert_eq!(thinned.groups[0].rows, thinned.voxels.len());
    }
}
