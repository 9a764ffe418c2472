//! Figures across subjects: the decoding reports of several calibrations grouped by method
//! (BrainMCLIP's targets, the final-only ablation, the ridge baseline...), each figure as the
//! mean and sample SD over the subjects. It only summarises; `evaluate.rs` makes the reports.

use serde::Serialize;

use super::evaluate::DecodingReport;
use super::layout::{score_layouts, LayoutScore};
use super::reconstruct::ReconstructionReport;

/// Mean and sample standard deviation (n - 1; 0 for one subject) of one figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanSd {
    pub mean: f64,
    pub sd: f64,
}

impl MeanSd {
    pub fn of(values: &[f64]) -> MeanSd {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        MeanSd { mean, sd }
    }
}

impl std::fmt::Display for MeanSd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} ± {:.3}", self.mean, self.sd)
    }
}

/// One method over its subjects.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    pub method: String,
    pub subjects: usize,
    pub semantic_identification: MeanSd,
    pub detail_identification: MeanSd,
    pub semantic_top1: MeanSd,
    pub layout_probe_r: MeanSd,
}

/// `(method, report)` rows grouped by method, in order of first appearance.
fn by_method<T>(rows: &[(String, T)]) -> Vec<(&str, Vec<&T>)> {
    let mut groups: Vec<(&str, Vec<&T>)> = Vec::new();
    for (m, report) in rows {
        match groups.iter_mut().find(|(name, _)| name == m) {
            Some((_, reports)) => reports.push(report),
            None => groups.push((m, vec![report])),
        }
    }
    groups
}

fn figure<T>(reports: &[&T], f: impl Fn(&T) -> f64) -> MeanSd {
    MeanSd::of(&reports.iter().map(|r| f(r)).collect::<Vec<_>>())
}

/// Groups `(method, report)` rows by method, in order of first appearance.
pub fn summarise(rows: &[(String, DecodingReport)]) -> Vec<MethodSummary> {
    by_method(rows)
        .into_iter()
        .map(|(method, reports)| {
            let figure = |f: fn(&DecodingReport) -> f64| figure(&reports, f);
            MethodSummary {
                method: method.to_string(),
                subjects: reports.len(),
                semantic_identification: figure(|r| r.semantic_identification.mean),
                detail_identification: figure(|r| r.detail_identification.mean),
                semantic_top1: figure(|r| r.semantic_top1.mean),
                layout_probe_r: figure(|r| r.layout_probe_r),
            }
        })
        .collect()
}

/// Each method's layout over every subject's single-object images at once: three subjects give
/// three times one subject's images, so this interval is the one to read.
pub fn pooled_layouts(rows: &[(String, ReconstructionReport)]) -> Vec<(String, LayoutScore)> {
    by_method(rows)
        .into_iter()
        .map(|(method, reports)| {
            let (measured, truth): (Vec<_>, Vec<_>) = reports
                .iter()
                .flat_map(|r| r.layout_pairs.iter().copied())
                .unzip();
            (method.to_string(), score_layouts(&measured, &truth))
        })
        .collect()
}

/// One decoder + generator pair's reconstructions over its subjects.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub method: String,
    pub subjects: usize,
    pub pixcorr: MeanSd,
    pub ssim: MeanSd,
    pub identification: MeanSd,
    pub position_r: MeanSd,
    pub size_r: MeanSd,
    pub position_error: MeanSd,
}

/// Groups `(method, reconstruction report)` rows by method, in order of first appearance.
pub fn summarise_images(rows: &[(String, ReconstructionReport)]) -> Vec<ImageSummary> {
    by_method(rows)
        .into_iter()
        .map(|(method, reports)| {
            let figure = |f: fn(&ReconstructionReport) -> f64| figure(&reports, f);
            ImageSummary {
                method: method.to_string(),
                subjects: reports.len(),
                pixcorr: figure(|r| r.pixcorr.mean),
                ssim: figure(|r| r.ssim.mean),
                identification: figure(|r| r.identification.mean),
                position_r: figure(|r| r.layout.position_r.mean),
                size_r: figure(|r| r.layout.size_r.mean),
                position_error: figure(|r| r.layout.position_error.mean),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Estimate;

    fn report(semantic: f64, layout: f64) -> DecodingReport {
        let e = |mean| Estimate {
            mean,
            low: mean,
            high: mean,
        };
        DecodingReport {
            test_images: 10,
            semantic_identification: e(semantic),
            detail_identification: e(0.5),
            retrieval_candidates: 10,
            semantic_top1: e(0.1),
            layout_probe_r: layout,
            layout_probe_images: (10, 3),
        }
    }

    #[test]
    fn methods_are_summarised_over_their_own_subjects() {
        let rows = vec![
            ("projector".to_string(), report(0.9, 0.2)),
            ("ridge".to_string(), report(0.7, 0.1)),
            ("projector".to_string(), report(0.8, 0.4)),
            ("projector".to_string(), report(0.7, 0.3)),
        ];
        let s = summarise(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].method.as_str(), s[0].subjects), ("projector", 3));
        assert!((s[0].semantic_identification.mean - 0.8).abs() < 1e-12);
        // Sample SD of 0.9, 0.8, 0.7 is 0.1.
        assert!((s[0].semantic_identification.sd - 0.1).abs() < 1e-12);
        assert!((s[0].layout_probe_r.mean - 0.3).abs() < 1e-12);
        assert_eq!((s[1].subjects, s[1].semantic_identification.sd), (1, 0.0));
        assert_eq!(
            s[1].to_owned().semantic_identification.to_string(),
            "0.700 ± 0.000"
        );
    }
}
