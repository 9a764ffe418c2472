//! Calibration from per-trial responses estimated offline (`[betas]` in the calibration file):
//! a 4-D NIfTI with one volume per trial (GLMsingle's output, NSD's betas, `brainmclip betas`)
//! and a TSV naming each volume's image and split, masked with the same label image as the live
//! path. Training trials are kept one by one, test trials averaged over their repeats, exactly
//! as for BIDS runs (`calibrate::collect_responses`).
//!
//! It reads responses; it does not estimate them, and it cannot make them look like live
//! samples: see the README ("Using real data") on train/live skew.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::calibrate::Responses;
use super::calibrate::{file_err, stimulus_id, CalibrateConfig, CalibrateError, ResponseSorter};
use crate::ingest::RunReader;
use crate::preprocess::masks::Masks;
use crate::tsv::{cell, Table};

/// `[betas]`: the files (relative to the calibration file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BetasInput {
    /// 4-D NIfTI, one volume per trial, on the label image's grid.
    pub file: PathBuf,
    /// Tab-separated, one row per volume in order, with `stim_file` (or `image`) and
    /// `trial_type` (or `split`) holding the calibration's train / test trial types.
    pub trials: PathBuf,
}

const EXPECTED: &str =
    "tab-separated columns stim_file (or image) and trial_type (or split), one row per volume";

/// Each volume's (stimulus id, trial type), from the TSV.
fn read_trials(path: &Path) -> Result<Vec<(String, String)>, CalibrateError> {
    let err = |message: String| file_err(path, message);
    let table = Table::read(path).map_err(err)?;
    let pick = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| table.optional_column(n))
            .ok_or_else(|| err(format!("no `{}` column; expected {EXPECTED}", names[0])))
    };
    let (stim, kind) = (
        pick(["stim_file", "image"])?,
        pick(["trial_type", "split"])?,
    );
    let mut rows = Vec::new();
    for (line, cells) in table.rows() {
        let image = cell(cells, stim, line).map_err(err)?;
        let trial_type = cell(cells, kind, line).map_err(err)?;
        rows.push((stimulus_id(image), trial_type.to_string()));
    }
    Ok(rows)
}

/// The responses in `betas`, masked by the calibration's label image.
pub fn collect_betas(
    config: &CalibrateConfig,
    betas: &BetasInput,
) -> Result<Responses, CalibrateError> {
    let trials = read_trials(&betas.trials)?;
    let session = config.session_config()?;
    let mut reader = RunReader::open(&betas.file, session.ingest.max_voxels)
        .map_err(|e| file_err(&betas.file, e))?;
    let n = reader.n_volumes();
    if n != trials.len() {
        return Err(file_err(
            &betas.file,
            format!(
                "{n} volumes, but {} names {} trials: expected one row per volume",
                betas.trials.display(),
                trials.len()
            ),
        ));
    }
    let p = &session.preprocess;
    let (Some(labels), Some(table)) = (&p.labels, &p.label_table) else {
        return Err(CalibrateError::Invalid(
            "calibrating from betas needs preprocess.labels and preprocess.label_table".into(),
        ));
    };
    let masks = Masks::load(
        labels,
        table,
        &reader.header().geometry(),
        session.ingest.affine_tolerance_mm,
    )
    .map_err(|e| file_err(&betas.file, e))?;
    let mut sorter = ResponseSorter::new(config);
    let (mut detail, mut semantic) = (Vec::new(), Vec::new());
    let mut replaced = 0usize;
    for (k, (stimulus, trial_type)) in trials.into_iter().enumerate() {
        let (volume, _) = reader
            .next_volume()
            .ok_or_else(|| file_err(&betas.file, format!("ends before volume {k}")))?
            .map_err(|e| file_err(&betas.file, format!("volume {k}: {e}")))?;
        Masks::gather(&masks.detail, &volume, &mut detail);
        Masks::gather(&masks.semantic, &volume, &mut semantic);
        // GLM outputs hold NaN where their own brain mask ended; inside ours such a voxel has
        // no estimate, and 0 is near the training trials' mean once standardised.
        for v in detail.iter_mut().chain(semantic.iter_mut()) {
            if !v.is_finite() {
                *v = 0.0;
                replaced += 1;
            }
        }
        sorter.push(stimulus, &trial_type, &detail, &semantic);
    }
    if replaced > 0 {
        tracing::warn!(
            "{}: {replaced} non-finite values inside the masks (outside the GLM's brain \
             mask?) read as 0",
            betas.file.display()
        );
    }
    Ok(sorter.finish(vec![betas.file.clone()]))
}
