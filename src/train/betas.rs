//! `brainmclip betas`: per-trial response estimates ("betas") from a subject's BIDS runs, made
//! the way labs make them offline for decoders (NSD's single-trial betas): per run, a
//! least-squares-all GLM with one regressor per trial (its boxcar through SPM's canonical
//! double-gamma HRF), Legendre drifts and an intercept, fitted on the detail-mask voxels; betas
//! in percent signal change. This file finds the runs, reads and realigns them (the offline
//! reader and the live realigner, to the run's first kept volume, so motion is handled as the
//! live path handles it) and writes the NIfTI and TSV; `glm` holds the arithmetic.
//!
//! It is not GLMsingle: no per-voxel HRF library, no GLMdenoise regressors, no ridge. It is not
//! the live path's trial averaging either (`preprocess::trials`); `train::trial_betas` reads
//! what this writes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{MotionMode, SessionConfig};
use crate::ingest::nifti_write::{encode_values, header_bytes, NiftiSpec, WriteError};
use crate::ingest::{read_volume_file, Datatype, Geometry, ReadError, RunReader};
use crate::preprocess::masks::{MaskError, Masks};
use crate::preprocess::realign::Realigner;
use crate::preprocess::trials::{read_events, Trial, TrialError};
use crate::train::calibrate::{CalibrateConfig, CalibrateError};

mod glm;
pub use glm::spm_hrf;
use glm::Fit;

#[derive(Debug, thiserror::Error)]
pub enum BetasError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Session(#[from] CalibrateError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Events(#[from] TrialError),
    #[error(transparent)]
    Masks(#[from] MaskError),
    #[error("{0}")]
    Invalid(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> BetasError {
    BetasError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// What to estimate and where to write it.
#[derive(Debug, Clone)]
pub struct BetasJob {
    /// BIDS root with `sub-<subject>/func/*_bold.nii(.gz)` and their `*_events.tsv`.
    pub bids: PathBuf,
    /// The BIDS label, without `sub-`.
    pub subject: String,
    /// Output folder.
    pub out: PathBuf,
    /// A session file for `[preprocess]` (labels, motion, reference, dummy scans) and `[ingest]`
    /// limits; masks default to the BIDS `anat/sub-<subject>_desc-visual_dseg.nii.gz` + `.tsv`.
    pub session: Option<PathBuf>,
    /// Highest Legendre polynomial degree of the drift regressors (0 = intercept only). None:
    /// per run, the highest up to 3 that the run's design can tell apart from its trials (runs
    /// packed with trials from start to end get 1; see `glm::MAX_INFLATION`).
    pub drift_degree: Option<usize>,
    /// Volumes left out at the start of every run. None: the session file's
    /// `preprocess.dummy_scans` when there is one, else the run sidecar's `DummyScans`, else 0.
    pub dummy_scans: Option<u32>,
}

impl BetasJob {
    pub fn new(bids: PathBuf, subject: &str, out: PathBuf) -> BetasJob {
        BetasJob {
            bids,
            subject: subject.trim_start_matches("sub-").to_string(),
            out,
            session: None,
            drift_degree: None,
            dummy_scans: None,
        }
    }

    fn stem(&self) -> String {
        format!("sub-{}_desc-singletrial_betas", self.subject)
    }

    /// The 4-D NIfTI written: one float32 volume per trial.
    pub fn betas_path(&self) -> PathBuf {
        self.out.join(format!("{}.nii.gz", self.stem()))
    }

    /// The TSV written: `volume run onset stim_file trial_type`, one row per volume.
    pub fn table_path(&self) -> PathBuf {
        self.out.join(format!("{}.tsv", self.stem()))
    }
}

#[derive(Debug, Clone)]
pub struct BetasSummary {
    pub runs: usize,
    pub trials: usize,
    /// Voxels fitted (the detail mask).
    pub voxels: usize,
    pub betas: PathBuf,
    pub table: PathBuf,
    pub per_run: Vec<RunSummary>,
    /// Wall time in all (reading, realigning, fitting, writing).
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The BIDS name without `_bold.nii(.gz)`, as in the TSV's `run` column.
    pub name: String,
    pub trials: usize,
    pub dummy_scans: usize,
    pub drift_degree: usize,
    /// Reading, realigning and fitting the run.
    pub seconds: f64,
}

/// A run's files.
struct Run {
    bold: PathBuf,
    events: PathBuf,
    sidecar: PathBuf,
    /// The BIDS name without `_bold.nii.gz`, e.g. `sub-01_task-images_run-01`.
    name: String,
}

fn find_runs(func: &Path) -> Result<Vec<Run>, BetasError> {
    let mut runs = Vec::new();
    let listed = std::fs::read_dir(func).map_err(|e| {
        file_err(
            func,
            format!("cannot list: {e}; expected the subject's BIDS func folder"),
        )
    })?;
    for entry in listed {
        let path = entry.map_err(|e| file_err(func, e))?.path();
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
        let Some(name) = file.as_deref().and_then(|f| {
            f.strip_suffix("_bold.nii.gz")
                .or_else(|| f.strip_suffix("_bold.nii"))
        }) else {
            continue;
        };
        let events = func.join(format!("{name}_events.tsv"));
        if !events.exists() {
            return Err(file_err(
                &events,
                "missing: every run needs its BIDS events file",
            ));
        }
        runs.push(Run {
            sidecar: func.join(format!("{name}_bold.json")),
            name: name.to_string(),
            bold: path,
            events,
        });
    }
    runs.sort_by(|a, b| a.bold.cmp(&b.bold));
    if runs.is_empty() {
        return Err(file_err(func, "no *_bold.nii(.gz) runs"));
    }
    Ok(runs)
}

/// A field of the run's JSON sidecar, when the sidecar exists and has it.
fn sidecar_number(path: &Path, key: &str) -> Result<Option<f64>, BetasError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| file_err(path, format!("not a BIDS JSON sidecar: {e}")))?;
    Ok(json.get(key).and_then(|v| v.as_f64()))
}

/// One run's betas: trial-major `trials × voxels` in percent signal change.
struct RunBetas {
    trials: Vec<Trial>,
    values: Vec<f32>,
    geometry: Geometry,
    dummy_scans: usize,
    drift_degree: usize,
}

/// Fixed for the whole job once the first run is open.
struct Fitter {
    session: SessionConfig,
    job: BetasJob,
    masks: Option<Masks>,
}

impl Fitter {
    fn dummy_scans(&self, run: &Run) -> Result<usize, BetasError> {
        if let Some(n) = self.job.dummy_scans {
            return Ok(n as usize);
        }
        if self.job.session.is_some() {
            return Ok(self.session.preprocess.dummy_scans as usize);
        }
        Ok(sidecar_number(&run.sidecar, "DummyScans")?.map_or(0, |n| n.max(0.0) as usize))
    }

    fn tr(&self, run: &Run, geometry: &Geometry) -> Result<f64, BetasError> {
        if self.session.session.tr > 0.0 {
            return Ok(self.session.session.tr);
        }
        if let Some(tr) = geometry.tr_s {
            return Ok(tr);
        }
        sidecar_number(&run.sidecar, "RepetitionTime")?
            .filter(|t| t.is_finite() && *t > 0.0)
            .ok_or_else(|| {
                file_err(
                    &run.bold,
                    "no TR: expected pixdim[4] in the header, RepetitionTime in the sidecar or \
                     session.tr",
                )
            })
    }

    /// Reads, realigns and masks a run, then fits its GLM.
    fn run(&mut self, run: &Run) -> Result<RunBetas, BetasError> {
        let p = &self.session.preprocess;
        let max_voxels = self.session.ingest.max_voxels;
        let mut reader = RunReader::open(&run.bold, max_voxels)?;
        let geometry = reader.header().geometry();
        let tr = self.tr(run, &geometry)?;
        let dummy = self.dummy_scans(run)?;
        let masks = match &self.masks {
            Some(m) => {
                let tolerance = self.session.ingest.affine_tolerance_mm;
                if let Some(why) = m.geometry.mismatch(&geometry, tolerance) {
                    return Err(file_err(
                        &run.bold,
                        format!("its grid differs from the label image's: {why}"),
                    ));
                }
                m
            }
            None => {
                let (Some(labels), Some(table)) = (&p.labels, &p.label_table) else {
                    return Err(file_err(
                        &run.bold,
                        "no label image: expected preprocess.labels and preprocess.label_table",
                    ));
                };
                let tolerance = self.session.ingest.affine_tolerance_mm;
                let masks = Masks::load(labels, table, &geometry, tolerance)?;
                self.masks.insert(masks)
            }
        };
        let mut trials = read_events(&run.events)?;
        trials.sort_by(|a, b| a.onset_s.total_cmp(&b.onset_s));
        let n = reader.n_volumes();
        let cols = trials.len() + self.job.drift_degree.unwrap_or(0) + 1;
        if n <= dummy + cols {
            return Err(file_err(
                &run.bold,
                format!(
                    "{n} volumes, {dummy} of them dummy scans: expected more than {cols} usable \
                     volumes for {} trials and the drift terms",
                    trials.len(),
                ),
            ));
        }
        // The design first: a bad events file fails before the run is read.
        let times: Vec<f64> = (dummy..n).map(|k| k as f64 * tr).collect();
        let fit = match self.job.drift_degree {
            Some(degree) => Fit::new(&times, &trials, degree),
            None => Fit::auto(&times, &trials),
        }
        .map_err(|m| file_err(&run.events, m))?;
        let mut reference = match &p.reference {
            Some(path) => Some(read_volume_file(path, max_voxels)?.data),
            None => None,
        };
        let voxels = masks.detail.len();
        let mut series = Vec::with_capacity((n - dummy) * voxels);
        let mut realigner = None;
        let mut params = [0.0f32; 6];
        let mut resliced = Vec::new();
        let mut gathered = Vec::new();
        for k in 0..n {
            let (data, _) = reader
                .next_volume()
                .ok_or_else(|| file_err(&run.bold, format!("ends before volume {k} of {n}")))??;
            if k < dummy {
                continue;
            }
            let mut volume: &[f32] = &data;
            if p.motion != MotionMode::Off {
                if realigner.is_none() {
                    let r = reference.take().unwrap_or_else(|| data.clone());
                    let built = Realigner::new(&r, geometry.dims, geometry.voxel_size)
                        .map_err(|e| file_err(&run.bold, format!("motion reference: {e}")))?;
                    realigner = Some(built);
                }
                if let Some(realigner) = &realigner {
                    params = realigner
                        .estimate(&data, params)
                        .map_err(|e| file_err(&run.bold, format!("volume {k}: {e}")))?;
                    if p.motion == MotionMode::Realign {
                        realigner.reslice(&data, &params, &mut resliced);
                        volume = &resliced;
                    }
                    tracing::debug!("{} volume {k}: motion {params:?}", run.name);
                }
            }
            Masks::gather(&masks.detail, volume, &mut gathered);
            series.extend_from_slice(&gathered);
        }
        let (values, skipped) = fit.psc(&series, voxels);
        if skipped > 0 {
            tracing::warn!(
                "{}: {skipped} of {voxels} mask voxels have no usable baseline (non-finite \
                 samples or intensity <= 0); their betas are 0",
                run.bold.display()
            );
        }
        if trials.is_empty() {
            tracing::warn!("{}: no trials; the run adds no betas", run.events.display());
        }
        Ok(RunBetas {
            trials,
            values,
            geometry,
            dummy_scans: dummy,
            drift_degree: fit.degree,
        })
    }
}

/// Estimates single-trial betas for every run of the subject and writes the NIfTI and TSV.
pub fn estimate_betas(job: &BetasJob) -> Result<BetasSummary, BetasError> {
    let started = Instant::now();
    if let Some(degree) = job.drift_degree.filter(|d| *d > 10) {
        return Err(BetasError::Invalid(format!(
            "drift degree {degree}: expected 0 to 10 (higher polynomials fit the responses too)"
        )));
    }
    if job.subject.is_empty() || !job.subject.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(BetasError::Invalid(format!(
            "subject {:?}: expected a BIDS label (letters and digits, e.g. 01)",
            job.subject
        )));
    }
    let config = CalibrateConfig {
        bids: job.bids.clone(),
        subject: job.subject.clone(),
        session: job.session.clone(),
        ..CalibrateConfig::default()
    };
    let func = job.bids.join(format!("sub-{}", job.subject)).join("func");
    let runs = find_runs(&func)?;
    tracing::info!("betas: {} runs of sub-{}", runs.len(), job.subject);
    let mut fitter = Fitter {
        session: config.session_config()?,
        job: job.clone(),
        masks: None,
    };
    let (mut fitted, mut per_run) = (Vec::new(), Vec::new());
    for (i, run) in runs.iter().enumerate() {
        let t0 = Instant::now();
        let betas = fitter.run(run)?;
        let summary = RunSummary {
            name: run.name.clone(),
            trials: betas.trials.len(),
            dummy_scans: betas.dummy_scans,
            drift_degree: betas.drift_degree,
            seconds: t0.elapsed().as_secs_f64(),
        };
        tracing::info!(
            "betas: run {}/{} {}: {} trials, {} dummy scans, drift degree {}, {:.2} s",
            i + 1,
            runs.len(),
            run.name,
            summary.trials,
            summary.dummy_scans,
            summary.drift_degree,
            summary.seconds
        );
        fitted.push(betas);
        per_run.push(summary);
    }
    let trials: usize = fitted.iter().map(|b| b.trials.len()).sum();
    let (Some(masks), true) = (fitter.masks, trials > 0) else {
        return Err(file_err(&func, "no trials in any run's events file"));
    };
    write_outputs(job, &runs, &fitted, &masks)?;
    Ok(BetasSummary {
        runs: runs.len(),
        trials,
        voxels: masks.detail.len(),
        betas: job.betas_path(),
        table: job.table_path(),
        per_run,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The 4-D NIfTI (zeros outside the detail mask) and its TSV, each written atomically.
fn write_outputs(
    job: &BetasJob,
    runs: &[Run],
    fitted: &[RunBetas],
    masks: &Masks,
) -> Result<(), BetasError> {
    use std::io::Write;
    let (path, table) = (job.betas_path(), job.table_path());
    let trials: usize = fitted.iter().map(|b| b.trials.len()).sum();
    // The first run's grid (every run was checked against the label image).
    let g = fitted.first().map_or(&masks.geometry, |b| &b.geometry);
    let mut spec = NiftiSpec::new(&g.dims, g.voxel_size, Datatype::F32);
    spec.affine = Some(g.affine);
    let write_err = |e: WriteError| file_err(&path, e);
    let volume_spec = spec.clone();
    spec.dims.push(trials);
    spec.description = "brainmclip single-trial betas (% signal change)".into();
    let header = header_bytes(&spec).map_err(write_err)?;
    let io_err = |e: std::io::Error| file_err(&path, e);
    // Compressed in memory: outside the mask a volume is zeros, which gzip all but removes.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&header).map_err(io_err)?;
    gz.write_all(&[0u8; 4]).map_err(io_err)?;
    let mut volume = vec![0.0f32; g.n_voxels()];
    let mut text = String::from("volume\trun\tonset\tstim_file\ttrial_type\n");
    let mut k = 0;
    let voxels = masks.detail.len();
    for (run, betas) in runs.iter().zip(fitted) {
        for (t, trial) in betas.trials.iter().enumerate() {
            let values = &betas.values[t * voxels..(t + 1) * voxels];
            for (&i, &v) in masks.detail.iter().zip(values) {
                volume[i] = v;
            }
            gz.write_all(&encode_values(&volume_spec, &volume).map_err(write_err)?)
                .map_err(io_err)?;
            let na = |s: &str| {
                if s.is_empty() {
                    "n/a".to_string()
                } else {
                    s.to_string()
                }
            };
            text.push_str(&format!(
                "{k}\t{}\t{:.3}\t{}\t{}\n",
                run.name,
                trial.onset_s,
                na(trial.stimulus.as_deref().unwrap_or("")),
                na(&trial.trial_type)
            ));
            k += 1;
        }
    }
    let bytes = gz.finish().map_err(io_err)?;
    crate::atomic::write_atomic(&path, &bytes).map_err(io_err)?;
    crate::atomic::write_atomic(&table, text.as_bytes()).map_err(|e| file_err(&table, e))?;
    tracing::info!(
        "betas: wrote {} ({trials} volumes) and {}",
        path.display(),
        table.display()
    );
    Ok(())
}
