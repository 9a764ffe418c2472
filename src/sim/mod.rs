//! The scanner-and-subject simulator: procedural stimuli, a simulated visual cortex, BOLD runs
//! with realistic noise and motion, written in BIDS layout with the ground truth beside them.
//!
//! `stimuli` draws images, `subject` builds the brain and its voxel models, `neural` turns
//! images into responses, `design` lays out the runs, `bold` makes the time series (with
//! `motion`), `bids` writes files. This module joins them; it is the world of the bundled demo
//! and the test data of every later stage, and it is not a model of any real person.

pub mod bids;
pub mod bold;
pub mod design;
pub mod motion;
pub mod neural;
pub mod stimuli;
pub mod subject;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ingest::nifti_write::{write_nifti, NiftiSpec, RunWriter, WriteError};
use crate::ingest::Datatype;
use bids::{write_json, write_png, write_tsv, Layout};
use bold::{simulate_run, NoiseParams};
use design::{make_design, DesignParams, RunKind};
use stimuli::{render, stimulus_set, to_rgb8, Stimulus, BACKGROUNDS, COLOURS, SHAPES, SIZES};
use subject::{Area, Grid, Subject, SubjectParams, Tissue};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GridChoice {
    /// 64 x 64 x 36 at 3 mm.
    #[serde(rename = "3mm")]
    Mm3,
    /// NSD's 81 x 104 x 83 at 1.8 mm.
    #[serde(rename = "1.8mm")]
    Nsd,
}

/// The `[simulate]` section of the session file. Every number's source is given in
/// `bold.rs`, `subject.rs` and `neural.rs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    pub subject: String,
    pub grid: GridChoice,
    pub image_size: usize,
    pub tr: f64,
    pub volumes_per_run: usize,
    pub dummy_scans: usize,
    pub stimulus_s: f64,
    pub gap_s: f64,
    pub train_runs: usize,
    pub test_runs: usize,
    pub test_repeats: usize,
    pub psc_v1: f32,
    pub psc_v2: f32,
    pub psc_v3: f32,
    pub psc_hv4: f32,
    pub psc_high: f32,
    pub hrf_lag_sd_s: f32,
    pub hrf_width_sd: f32,
    pub trial_variability: f32,
    pub neural_noise: f32,
    pub tsnr: f32,
    pub physio_fraction: f32,
    pub respiration_hz: f64,
    pub cardiac_hz: f64,
    pub drift_percent: f32,
    pub motion: bool,
    pub motion_step: f32,
    pub spike_probability: f64,
    pub spike_size: f32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            subject: "01".into(),
            grid: GridChoice::Mm3,
            image_size: 64,
            tr: 1.5,
            volumes_per_run: 200,
            dummy_scans: 4,
            stimulus_s: 3.0,
            gap_s: 1.0,
            train_runs: 4,
            test_runs: 2,
            test_repeats: 3,
            psc_v1: 2.0,
            psc_v2: 1.7,
            psc_v3: 1.4,
            psc_hv4: 1.2,
            psc_high: 0.8,
            hrf_lag_sd_s: 0.3,
            hrf_width_sd: 0.1,
            trial_variability: 0.2,
            neural_noise: 0.1,
            tsnr: 70.0,
            physio_fraction: 0.4,
            respiration_hz: 0.3,
            cardiac_hz: 1.1,
            drift_percent: 1.0,
            motion: true,
            motion_step: 0.02,
            spike_probability: 0.01,
            spike_size: 0.6,
        }
    }
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("simulate.tr", self.tr),
            ("simulate.stimulus_s", self.stimulus_s),
            ("simulate.tsnr", self.tsnr as f64),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("`{key}` is {v}, expected a positive number"));
            }
        }
        if !(16..=512).contains(&self.image_size) {
            return Err(format!(
                "`simulate.image_size` is {}, expected 16..=512",
                self.image_size
            ));
        }
        if !(0.0..1.0).contains(&self.physio_fraction) {
            return Err(format!(
                "`simulate.physio_fraction` is {}, expected 0 <= f < 1",
                self.physio_fraction
            ));
        }
        if self.subject.is_empty() || !self.subject.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "`simulate.subject` is {:?}, expected letters and digits (BIDS label)",
                self.subject
            ));
        }
        if self.design().trials_per_run() == 0 {
            return Err(format!(
                "`simulate.volumes_per_run` {} at TR {} s leaves no room for a trial after {} dummy scans and a 12 s tail",
                self.volumes_per_run, self.tr, self.dummy_scans
            ));
        }
        if self.test_repeats == 0 {
            return Err("`simulate.test_repeats` is 0, expected at least 1".into());
        }
        Ok(())
    }

    pub fn design(&self) -> DesignParams {
        DesignParams {
            tr_s: self.tr,
            volumes_per_run: self.volumes_per_run,
            dummy_scans: self.dummy_scans,
            stimulus_s: self.stimulus_s,
            gap_s: self.gap_s,
            train_runs: self.train_runs,
            test_runs: self.test_runs,
            test_repeats: self.test_repeats,
        }
    }

    pub fn grid(&self) -> Grid {
        match self.grid {
            GridChoice::Mm3 => Grid::MM3,
            GridChoice::Nsd => Grid::NSD,
        }
    }

    fn noise(&self) -> NoiseParams {
        NoiseParams {
            tsnr: self.tsnr,
            physio_fraction: self.physio_fraction,
            respiration_hz: self.respiration_hz,
            cardiac_hz: self.cardiac_hz,
            drift_percent: self.drift_percent,
            motion: self.motion,
            motion_step: self.motion_step,
            spike_probability: self.spike_probability,
            spike_size: self.spike_size,
            trial_variability: self.trial_variability,
            neural_noise: self.neural_noise,
        }
    }
}

/// What a simulation wrote.
#[derive(Debug, Clone)]
pub struct SimSummary {
    pub root: PathBuf,
    pub runs: Vec<PathBuf>,
    pub n_train_images: usize,
    pub n_test_images: usize,
    pub voxels_per_area: Vec<(String, usize)>,
}

/// The stimuli of a session: training images, then test images.
pub fn session_stimuli(config: &SimConfig, seed: u64) -> Vec<Stimulus> {
    let d = config.design();
    let mut all = stimulus_set(
        seed.wrapping_mul(2).wrapping_add(11),
        d.n_train_images(),
        "train",
    );
    all.extend(stimulus_set(
        seed.wrapping_mul(2).wrapping_add(12),
        d.n_test_images(),
        "test",
    ));
    all
}

fn describe_objects(s: &Stimulus) -> String {
    s.objects
        .iter()
        .map(|o| {
            format!(
                "{} {} {} ({:.3},{:.3}) {:.0}deg",
                SIZES[o.size].0,
                COLOURS[o.colour].0,
                SHAPES[o.shape],
                o.x,
                o.y,
                o.rotation.to_degrees()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Simulates a whole session into `out` (which may exist; files are replaced).
pub fn simulate(config: &SimConfig, out: &Path, seed: u64) -> Result<SimSummary, SimError> {
    simulate_runs(config, out, seed, None)
}

/// As `simulate`, writing only the runs numbered in `only` (each run has its own seed, so a
/// run is the same whether or not the others are written).
pub fn simulate_runs(
    config: &SimConfig,
    out: &Path,
    seed: u64,
    only: Option<&[usize]>,
) -> Result<SimSummary, SimError> {
    config.validate().map_err(SimError::Invalid)?;
    let layout = Layout {
        root: out.to_owned(),
        subject: config.subject.clone(),
    };
    let design = config.design();
    let stimuli = session_stimuli(config, seed);
    let n_train = design.n_train_images();

    // Stimuli.
    let mut rows = Vec::new();
    for (i, s) in stimuli.iter().enumerate() {
        let file = format!("{}.png", s.id);
        write_png(
            &layout.stimuli_dir().join(&file),
            &to_rgb8(&render(s, config.image_size)),
            config.image_size,
        )?;
        rows.push(vec![
            s.id.clone(),
            format!("stimuli/{file}"),
            if i < n_train { "train" } else { "test" }.into(),
            s.objects.len().to_string(),
            describe_objects(s),
            format!(
                "{} {}",
                BACKGROUNDS[s.background.kind], COLOURS[s.background.colour].0
            ),
            s.caption.clone(),
        ]);
    }
    write_tsv(
        &layout.stimuli_dir().join("stimuli.tsv"),
        &[
            "stim_id",
            "stim_file",
            "set",
            "n_objects",
            "objects",
            "background",
            "caption",
        ],
        &rows,
    )?;

    // Subject: anatomy, labels, voxel models.
    let subject = Subject::generate(
        &SubjectParams {
            grid: config.grid(),
            psc: [
                config.psc_v1,
                config.psc_v2,
                config.psc_v3,
                config.psc_hv4,
                config.psc_high,
            ],
            hrf_lag_sd_s: config.hrf_lag_sd_s,
            hrf_width_sd: config.hrf_width_sd,
        },
        seed,
    );
    let grid = subject.grid;
    let mut anat_spec = NiftiSpec::new(&grid.dims, [grid.voxel_mm; 3], Datatype::I16);
    anat_spec.affine = Some(grid.affine());
    anat_spec.description = "brainmclip simulated EPI baseline".into();
    write_nifti_atomic(&layout.anat(), &anat_spec, &subject.baseline)?;
    let mut label_spec = anat_spec.clone();
    label_spec.datatype = Datatype::U8;
    label_spec.description = "brainmclip simulated visual ROIs".into();
    let labels: Vec<f32> = subject.labels.iter().map(|&l| l as f32).collect();
    write_nifti_atomic(&layout.rois(), &label_spec, &labels)?;
    let voxels_per_area: Vec<(String, usize)> = Area::ALL
        .iter()
        .map(|a| (a.name().to_string(), subject.count(*a)))
        .collect();
    write_tsv(
        &layout.roi_table(),
        &["index", "name", "group", "voxels"],
        &Area::ALL
            .iter()
            .map(|a| {
                vec![
                    (*a as u8).to_string(),
                    a.name().into(),
                    a.group().into(),
                    subject.count(*a).to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    )?;
    let voxel_rows: Vec<Vec<String>> = subject
        .voxels
        .iter()
        .map(|v| {
            let prf = v.prf.as_ref();
            let f = |x: Option<f32>| x.map_or("n/a".to_string(), |x| format!("{x:.4}"));
            vec![
                v.index.to_string(),
                v.area.name().into(),
                f(prf.map(|p| p.cx)),
                f(prf.map(|p| p.cy)),
                f(prf.map(|p| p.sigma)),
                format!("{:.4}", v.psc),
                format!("{:.4}", v.hrf_lag_s),
                format!("{:.4}", v.hrf_width),
            ]
        })
        .collect();
    write_tsv(
        &layout.truth_dir().join("voxels.tsv"),
        &[
            "index",
            "area",
            "prf_x",
            "prf_y",
            "prf_sigma",
            "psc",
            "hrf_lag_s",
            "hrf_width",
        ],
        &voxel_rows,
    )?;

    let responses = neural::voxel_responses(&subject, &stimuli, config.image_size);
    // Ground-truth voxels: responsive ones spread over every area, and some that do not respond.
    let step = (subject.voxels.len() / 48).max(1);
    let mut sampled: Vec<usize> = subject
        .voxels
        .iter()
        .step_by(step)
        .map(|v| v.index)
        .collect();
    let quiet: Vec<usize> = (0..grid.n_voxels())
        .filter(|&i| subject.labels[i] == Area::OtherGrey as u8)
        .collect();
    sampled.extend(quiet.iter().step_by((quiet.len() / 16).max(1)).take(16));

    let runs = make_design(&design, seed);
    let noise = config.noise();
    let mut run_paths = Vec::new();
    let mut thermal_sd = 0.0;
    for run in &runs {
        if only.is_some_and(|o| !o.contains(&run.run)) {
            continue;
        }
        let mut spec = NiftiSpec::new(
            &[grid.dims[0], grid.dims[1], grid.dims[2], run.n_volumes],
            [grid.voxel_mm; 3],
            Datatype::I16,
        );
        spec.affine = Some(grid.affine());
        spec.tr_s = Some(config.tr as f32);
        spec.description = format!("brainmclip simulated run {} ({})", run.run, run.kind.name());
        let path = layout.bold(run.run);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| SimError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let mut writer = RunWriter::create(&path, &spec)?;
        let mut write_error = None;
        let truth = simulate_run(
            &subject,
            &responses,
            run,
            config.tr,
            &noise,
            &sampled,
            seed.wrapping_mul(1000).wrapping_add(run.run as u64),
            &mut |volume| {
                if write_error.is_none() {
                    if let Err(e) = writer.write_volume(volume) {
                        write_error = Some(e);
                    }
                }
            },
        );
        if let Some(e) = write_error {
            return Err(e.into());
        }
        writer.finish()?;
        thermal_sd = truth.thermal_sd;
        run_paths.push(path);

        write_json(
            &layout.bold_json(run.run),
            &json!({
                "RepetitionTime": config.tr,
                "TaskName": "images",
                "DummyScans": config.dummy_scans,
                "Manufacturer": "brainmclip simulator (synthetic data, not a scanner)",
                "RunType": run.kind.name(),
            }),
        )?;
        let events: Vec<Vec<String>> = run
            .trials
            .iter()
            .map(|t| {
                let s = &stimuli[t.stimulus];
                vec![
                    format!("{:.3}", t.onset_s),
                    format!("{:.3}", t.duration_s),
                    if t.stimulus < n_train {
                        "train"
                    } else {
                        "test"
                    }
                    .into(),
                    format!("stimuli/{}.png", s.id),
                ]
            })
            .collect();
        write_tsv(
            &layout.events(run.run),
            &["onset", "duration", "trial_type", "stim_file"],
            &events,
        )?;
        let motion_rows: Vec<Vec<String>> = truth
            .motion
            .iter()
            .enumerate()
            .map(|(k, p)| {
                std::iter::once(k.to_string())
                    .chain(p.iter().map(|v| format!("{v:.6}")))
                    .collect()
            })
            .collect();
        write_tsv(
            &layout.motion(run.run),
            &[
                "volume",
                "trans_x_mm",
                "trans_y_mm",
                "trans_z_mm",
                "rot_x_deg",
                "rot_y_deg",
                "rot_z_deg",
            ],
            &motion_rows,
        )?;
        let mut header = vec!["volume".to_string()];
        header.extend(
            sampled
                .iter()
                .map(|i| format!("vox{i}_{}", label_name(subject.labels[*i]))),
        );
        let signal_rows: Vec<Vec<String>> = (0..run.n_volumes)
            .map(|k| {
                std::iter::once(k.to_string())
                    .chain(truth.clean.iter().map(|c| format!("{:.3}", c[k])))
                    .collect()
            })
            .collect();
        let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
        write_tsv(&layout.signal(run.run), &header_refs, &signal_rows)?;
    }

    write_json(
        &out.join("dataset_description.json"),
        &json!({
            "Name": "brainmclip simulated session (synthetic: a simulated subject, not real data)",
            "BIDSVersion": "1.8.0",
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "brainmclip simulate", "Version": env!("CARGO_PKG_VERSION")}],
        }),
    )?;
    let grey = subject
        .tissue
        .iter()
        .filter(|t| **t == Tissue::Grey)
        .count();
    write_json(
        &layout.truth_dir().join("sim_parameters.json"),
        &json!({
            "seed": seed,
            "config": config,
            "grid": grid,
            "grey_matter_voxels": grey,
            "grey_matter_mean_baseline": subject.grey_mean(),
            "thermal_noise_sd": thermal_sd,
            "trials_per_run": design.trials_per_run(),
            "n_train_images": n_train,
            "n_test_images": design.n_test_images(),
            "runs": runs.iter().map(|r| json!({"run": r.run, "kind": r.kind.name(), "trials": r.trials.len()})).collect::<Vec<_>>(),
            "voxels_per_area": voxels_per_area,
            "motion_convention": "head point x moves to R x + t, R = Rz Ry Rx about the grid centre; params [tx ty tz] mm, [rx ry rz] degrees",
            "sampled_voxels": sampled,
        }),
    )?;
    write_json(
        &out.join("derivatives")
            .join("sim")
            .join("dataset_description.json"),
        &json!({"Name": "brainmclip simulator ground truth", "BIDSVersion": "1.8.0", "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "brainmclip simulate", "Version": env!("CARGO_PKG_VERSION")}]}),
    )?;
    Ok(SimSummary {
        root: out.to_owned(),
        runs: run_paths,
        n_train_images: n_train,
        n_test_images: design.n_test_images(),
        voxels_per_area,
    })
}

fn label_name(label: u8) -> &'static str {
    Area::ALL
        .iter()
        .find(|a| **a as u8 == label)
        .map_or("none", |a| a.name())
}

fn write_nifti_atomic(path: &Path, spec: &NiftiSpec, values: &[f32]) -> Result<(), SimError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| SimError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    Ok(write_nifti(path, spec, values)?)
}

/// Which runs are which, for callers that only need the design.
pub fn run_kinds(config: &SimConfig, seed: u64) -> Vec<(usize, RunKind)> {
    make_design(&config.design(), seed)
        .iter()
        .map(|r| (r.run, r.kind))
        .collect()
}
