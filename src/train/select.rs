//! Choosing a calibration's settings on the validation split, never the test trials: the
//! `[select]` section of the calibration file declares a small grid (lists of values for the
//! settings that matter most), every combination is trained on the training trials and scored
//! on the validation trials with the test's own metrics, and the best one is kept. The test
//! trials are scored once, for the chosen setting (`calibrate_run.rs`).
//!
//! It is not a hyper-parameter search: the grid is what the user declares, in full.

use serde::{Deserialize, Serialize};

use super::calibrate::{CalibrateConfig, CalibrateError};
use super::evaluate::DecodingReport;
use super::projector_train::TrainReport;

/// Values to try for each setting; an empty list keeps the calibration's own value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionGrid {
    /// `model.dropout`.
    pub dropout: Vec<f64>,
    /// `loss.semantic_contrastive`.
    pub semantic_contrastive: Vec<f64>,
    /// `train.input_noise`.
    pub input_noise: Vec<f64>,
    /// `train.weight_decay`.
    pub weight_decay: Vec<f64>,
}

/// One combination of the grid: its name (the settings it changes, also its folder under
/// `OUT/select/`) and the calibration it trains.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub settings: Vec<(String, f64)>,
    pub config: CalibrateConfig,
}

/// What the validation split said of one candidate.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    pub name: String,
    pub settings: Vec<(String, f64)>,
    /// Mean of the semantic and pooled-detail 2-way identification on the validation trials
    /// (single trials, not averaged): what the choice is made on.
    pub validation_score: f64,
    pub validation: DecodingReport,
    pub best_epoch: usize,
    pub best_semantic_epoch: usize,
    pub chosen: bool,
}

impl CandidateReport {
    pub fn new(candidate: &Candidate, validation: DecodingReport, training: &TrainReport) -> Self {
        CandidateReport {
            name: candidate.name.clone(),
            settings: candidate.settings.clone(),
            validation_score: validation_score(&validation),
            validation,
            best_epoch: training.best_epoch,
            best_semantic_epoch: training.best_semantic_epoch,
            chosen: false,
        }
    }
}

/// The selection criterion: both streams' identification count equally.
pub fn validation_score(report: &DecodingReport) -> f64 {
    (report.semantic_identification.mean + report.detail_identification.mean) / 2.0
}

/// Every combination of `grid` applied to `base`, in a fixed order; just `base` (named
/// "base") when the grid is empty.
pub fn candidates(base: &CalibrateConfig) -> Result<Vec<Candidate>, CalibrateError> {
    let grid = &base.select;
    type Apply = fn(&mut CalibrateConfig, f64);
    let axes: [(&str, &Vec<f64>, Apply); 4] = [
        ("dropout", &grid.dropout, |c, v| c.model.dropout = v),
        (
            "semantic_contrastive",
            &grid.semantic_contrastive,
            |c, v| c.loss.semantic_contrastive = v,
        ),
        ("input_noise", &grid.input_noise, |c, v| {
            c.train.input_noise = v
        }),
        ("weight_decay", &grid.weight_decay, |c, v| {
            c.train.weight_decay = v
        }),
    ];
    for (name, values, _) in &axes {
        if let Some(bad) = values.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(CalibrateError::Invalid(format!(
                "select.{name}: {bad} is not a setting (expected finite values >= 0)"
            )));
        }
        if (1..values.len()).any(|i| values[..i].contains(&values[i])) {
            return Err(CalibrateError::Invalid(format!(
                "select.{name} lists a value twice: {values:?}"
            )));
        }
    }
    let mut out = vec![Candidate {
        name: String::new(),
        settings: Vec::new(),
        config: base.clone(),
    }];
    for (name, values, apply) in axes {
        if values.is_empty() {
            continue;
        }
        out = out
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |&v| {
                    let mut next = c.clone();
                    apply(&mut next.config, v);
                    next.settings.push((name.to_string(), v));
                    next
                })
            })
            .collect();
    }
    for c in &mut out {
        c.name = if c.settings.is_empty() {
            "base".into()
        } else {
            c.settings
                .iter()
                .map(|(k, v)| format!("{k}-{v}"))
                .collect::<Vec<_>>()
                .join("_")
        };
    }
    Ok(out)
}

/// Index of the best report: highest validation score; ties go to the earlier candidate.
pub fn best(reports: &[CandidateReport]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, r) in reports.iter().enumerate() {
        if best.is_none_or(|b| r.validation_score > reports[b].validation_score) {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_every_combination_with_names_that_say_what_changed() {
        let mut base = CalibrateConfig::default();
        base.select.dropout = vec![0.3, 0.5];
        base.select.input_noise = vec![0.0, 0.1, 0.2];
        let all = candidates(&base).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[0].name, "dropout-0.3_input_noise-0");
        assert_eq!(all[5].name, "dropout-0.5_input_noise-0.2");
        assert_eq!(all[5].config.model.dropout, 0.5);
        assert_eq!(all[5].config.train.input_noise, 0.2);
        // Untouched settings keep the base's values.
        assert_eq!(
            all[5].config.loss.semantic_contrastive,
            base.loss.semantic_contrastive
        );
        base.select = SelectionGrid::default();
        let one = candidates(&base).unwrap();
        assert_eq!((one.len(), one[0].name.as_str()), (1, "base"));
    }

    #[test]
    fn a_bad_grid_is_refused_by_name() {
        let mut base = CalibrateConfig::default();
        base.select.weight_decay = vec![0.1, 0.1];
        let err = candidates(&base).unwrap_err().to_string();
        assert!(
            err.contains("select.weight_decay lists a value twice"),
            "{err}"
        );
        base.select.weight_decay = vec![-1.0];
        let err = candidates(&base).unwrap_err().to_string();
        assert!(err.contains("select.weight_decay: -1"), "{err}");
    }
}
