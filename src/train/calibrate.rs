//! `brainmclip calibrate`: what a subject's projector is trained on, gathered the way the live
//! path sees it. Every BIDS run of the subject goes through `PreprocessStage::offline` — the live
//! preprocessing and trial-assembly code — so calibration and live samples cannot drift apart.
//! Training trials are kept one by one; test trials are averaged over their repeats, as NSD
//! evaluations do. CLIP targets come from the encoder through `features` (cached in the output).
//!
//! The training loop is `projector_train.rs`; evaluation `evaluate.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::trial_betas::collect_betas;
pub use super::trial_betas::BetasInput;
use crate::config::SessionConfig;
use crate::features::{compute_features, read_features, FeatureJob, FeatureSet};
use crate::model::loss::LossWeights;
use crate::preprocess::stage::{PreprocessEvent, PreprocessStage};

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Features(#[from] crate::features::FeatureError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Preprocess(#[from] crate::preprocess::stage::PreprocessError),
    #[error(transparent)]
    Device(#[from] crate::model::device::DeviceError),
    #[error(transparent)]
    Parallel(#[from] super::parallel::ParallelError),
}

pub(crate) fn file_err(path: &Path, message: impl std::fmt::Display) -> CalibrateError {
    CalibrateError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Which CLIP layers the detail stream is aligned with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    /// BrainMCLIP: detail tokens from the intermediate layers, semantics from the final layer.
    Multi,
    /// The ablation: the detail stream aligned with the final layer's tokens too.
    FinalOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorShape {
    pub embed_dim: usize,
    pub blocks: usize,
    pub dropout: f64,
    pub token_rank: usize,
}

impl Default for ProjectorShape {
    fn default() -> Self {
        ProjectorShape {
            embed_dim: 256,
            blocks: 2,
            dropout: 0.3,
            token_rank: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    pub seed: u64,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Fraction of the training trials held out for validation and early stopping.
    pub validation_fraction: f64,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Gaussian noise (in z units) added to the voxels of each training batch.
    pub input_noise: f64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            seed: 1,
            epochs: 150,
            batch: 32,
            learning_rate: 1e-3,
            weight_decay: 0.05,
            validation_fraction: 0.1,
            patience: 25,
            input_noise: 0.2,
        }
    }
}

/// The calibration file (TOML). Paths are relative to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrateConfig {
    /// BIDS root with `sub-<subject>/func/*_bold.nii.gz`, events and `stimuli/`.
    pub bids: PathBuf,
    pub subject: String,
    /// A Hugging Face CLIP folder (real weights or the demo encoder).
    pub encoder: PathBuf,
    /// A session file for the `[preprocess]` settings (masks default to the BIDS `anat` dseg).
    pub session: Option<PathBuf>,
    /// Output folder (`calibration/<subject>`).
    pub out: PathBuf,
    /// Detail layers, 1-based; default: the encoder's `brainmclip.detail_layers`, else 11-20.
    pub detail_layers: Option<(usize, usize)>,
    pub targets: TargetMode,
    /// `trial_type` values of training and test trials in the events files.
    pub train_trial_type: String,
    pub test_trial_type: String,
    pub model: ProjectorShape,
    pub loss: LossWeights,
    pub train: TrainSettings,
    /// Where the projector trains: auto (a CUDA GPU when usable), cpu or cuda.
    pub device: crate::model::device::DeviceChoice,
    /// Per-trial responses estimated offline, used instead of the BIDS runs (which then need
    /// not exist; `stimuli/` and `anat/` are still read from `bids`).
    pub betas: Option<BetasInput>,
    /// Settings to choose among on the validation split (`select.rs`); empty: none.
    pub select: super::select::SelectionGrid,
}

impl Default for CalibrateConfig {
    fn default() -> Self {
        CalibrateConfig {
            bids: PathBuf::from("sim"),
            subject: "01".into(),
            encoder: PathBuf::from("assets/demo-encoder"),
            session: None,
            out: PathBuf::from("calibration/demo"),
            detail_layers: None,
            targets: TargetMode::Multi,
            train_trial_type: "train".into(),
            test_trial_type: "test".into(),
            model: ProjectorShape::default(),
            loss: LossWeights::default(),
            train: TrainSettings::default(),
            device: Default::default(),
            betas: None,
            select: Default::default(),
        }
    }
}

impl CalibrateConfig {
    pub fn load(path: &Path) -> Result<CalibrateConfig, CalibrateError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
        let mut config: CalibrateConfig = toml::from_str(&text)
            .map_err(|e| file_err(path, e.to_string().trim_end().to_owned()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.bids, &mut config.encoder, &mut config.out] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(s) = config.session.as_mut().filter(|s| s.is_relative()) {
            *s = base.join(&*s);
        }
        if let Some(b) = config.betas.as_mut() {
            for p in [&mut b.file, &mut b.trials] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(config)
    }

    fn subject_dir(&self) -> PathBuf {
        self.bids.join(format!("sub-{}", self.subject))
    }

    /// The session settings runs are preprocessed with: the session file's, with masks from the
    /// BIDS `anat` folder unless it names its own.
    pub fn session_config(&self) -> Result<SessionConfig, CalibrateError> {
        let mut session = match &self.session {
            Some(path) => SessionConfig::load(path)?,
            None => SessionConfig::default(),
        };
        let anat = self.subject_dir().join("anat");
        let stem = format!("sub-{}_desc-visual_dseg", self.subject);
        let p = &mut session.preprocess;
        if p.labels.is_none() {
            p.labels = Some(anat.join(format!("{stem}.nii.gz")));
        }
        if p.label_table.is_none() {
            p.label_table = Some(anat.join(format!("{stem}.tsv")));
        }
        p.continuous = false;
        Ok(session)
    }

    /// The detail layers the targets use, after the target mode.
    pub fn layers(&self) -> Result<(usize, usize), CalibrateError> {
        let path = self.encoder.join("config.json");
        let json: serde_json::Value = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| file_err(&path, "cannot read the encoder's config.json"))?;
        let vision = json.get("vision_config").unwrap_or(&json);
        let blocks = vision
            .get("num_hidden_layers")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| file_err(&path, "no vision num_hidden_layers"))?
            as usize;
        if self.targets == TargetMode::FinalOnly {
            return Ok((blocks, blocks));
        }
        if let Some(l) = self.detail_layers {
            return Ok(l);
        }
        Ok(crate::model::load::detail_layers_of(&json).unwrap_or((11, 20)))
    }
}

/// One trial's response with the id of its stimulus.
#[derive(Debug, Clone)]
pub struct Response {
    pub stimulus: String,
    pub detail: Vec<f32>,
    pub semantic: Vec<f32>,
    /// How many trials were averaged (test repeats).
    pub repeats: usize,
}

/// Training responses (one per trial) and test responses (averaged per stimulus).
pub struct Responses {
    pub train: Vec<Response>,
    pub test: Vec<Response>,
    pub runs: Vec<PathBuf>,
}

/// Sorts trials as they come: training trials kept one by one, test trials summed per stimulus
/// and averaged over their repeats at the end, as NSD evaluations do.
pub(crate) struct ResponseSorter {
    train_type: String,
    test_type: String,
    train: Vec<Response>,
    test: BTreeMap<String, Response>,
}

impl ResponseSorter {
    pub(crate) fn new(config: &CalibrateConfig) -> ResponseSorter {
        ResponseSorter {
            train_type: config.train_trial_type.clone(),
            test_type: config.test_trial_type.clone(),
            train: Vec::new(),
            test: BTreeMap::new(),
        }
    }

    /// One trial; a trial of neither type is left out.
    pub(crate) fn push(
        &mut self,
        stimulus: String,
        trial_type: &str,
        detail: &[f32],
        semantic: &[f32],
    ) {
        if trial_type == self.train_type {
            self.train.push(Response {
                stimulus,
                detail: detail.to_vec(),
                semantic: semantic.to_vec(),
                repeats: 1,
            });
        } else if trial_type == self.test_type {
            let entry = self
                .test
                .entry(stimulus.clone())
                .or_insert_with(|| Response {
                    stimulus,
                    detail: vec![0.0; detail.len()],
                    semantic: vec![0.0; semantic.len()],
                    repeats: 0,
                });
            entry
                .detail
                .iter_mut()
                .zip(detail)
                .for_each(|(a, b)| *a += b);
            entry
                .semantic
                .iter_mut()
                .zip(semantic)
                .for_each(|(a, b)| *a += b);
            entry.repeats += 1;
        }
    }

    pub(crate) fn finish(self, runs: Vec<PathBuf>) -> Responses {
        let test = self
            .test
            .into_values()
            .map(|mut r| {
                let k = r.repeats.max(1) as f32;
                r.detail.iter_mut().for_each(|v| *v /= k);
                r.semantic.iter_mut().for_each(|v| *v /= k);
                r
            })
            .collect();
        Responses {
            train: self.train,
            test,
            runs,
        }
    }
}

/// The stimulus id of a BIDS `stim_file` (its file stem).
pub(crate) fn stimulus_id(stim_file: &str) -> String {
    Path::new(stim_file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| stim_file.to_string())
}

/// Every run of the subject through the live preprocessing (or the `[betas]` file), trials
/// sorted into train and test.
pub fn collect_responses(config: &CalibrateConfig) -> Result<Responses, CalibrateError> {
    if let Some(betas) = &config.betas {
        return collect_betas(config, betas);
    }
    let func = config.subject_dir().join("func");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&func)
        .map_err(|e| file_err(&func, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.to_string_lossy().ends_with("_bold.nii.gz")
                || p.to_string_lossy().ends_with("_bold.nii")
        })
        .collect();
    runs.sort();
    if runs.is_empty() {
        return Err(file_err(&func, "no *_bold.nii(.gz) runs"));
    }
    let base = config.session_config()?;
    let mut sorter = ResponseSorter::new(config);
    for run in &runs {
        let name = run.to_string_lossy();
        let stem = name
            .trim_end_matches(".gz")
            .trim_end_matches(".nii")
            .trim_end_matches("_bold");
        let events = PathBuf::from(format!("{stem}_events.tsv"));
        if !events.exists() {
            return Err(file_err(
                &events,
                "missing: every run needs its BIDS events file",
            ));
        }
        let mut session = base.clone();
        session.preprocess.events = Some(events);
        let stage = PreprocessStage::offline(&session, run)?;
        for event in stage.events().iter() {
            match event {
                PreprocessEvent::Sample(report) => {
                    let s = report.sample;
                    let Some(stim) = s.trial.stimulus.as_deref() else {
                        continue;
                    };
                    sorter.push(
                        stimulus_id(stim),
                        &s.trial.trial_type,
                        &s.detail,
                        &s.semantic,
                    );
                }
                PreprocessEvent::Error(message) => {
                    return Err(file_err(run, format!("preprocessing failed: {message}")))
                }
                PreprocessEvent::Ended { .. } => break,
                _ => {}
            }
        }
    }
    Ok(sorter.finish(runs))
}

/// The CLIP targets of every stimulus image, computed once into `out/features-<layers>.safetensors`.
pub fn stimulus_features(
    config: &CalibrateConfig,
    layers: (usize, usize),
) -> Result<FeatureSet, CalibrateError> {
    let path = config
        .out
        .join(format!("features-{}-{}.safetensors", layers.0, layers.1));
    if !path.exists() {
        std::fs::create_dir_all(&config.out).map_err(|e| file_err(&config.out, e))?;
        compute_features(&FeatureJob {
            device: crate::model::device::ComputeDevice::Cpu,
            encoder: config.encoder.clone(),
            images: config.bids.join("stimuli"),
            out: path.clone(),
            layers,
            batch: 32,
            max_batches: None,
            progress: true,
        })?;
    }
    Ok(read_features(&path)?)
}
