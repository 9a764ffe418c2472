//! The bundled demo as library calls: find the shipped models (from any working directory),
//! simulate a held-out test run of the demo subject (the one `calibration/demo` was calibrated
//! on, with images it never saw in training), build the session that replays it through the
//! whole live pipeline, collect what it decoded and drew (`Collector`, a sink), and score it
//! (`score`). Everything here is synthetic: a simulated brain and small models trained on the
//! simulator's world, not real data. It does not open the window (the CLI does).

pub mod score;
pub mod sim_cache;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::assets::{find, search_roots, AssetError};
use crate::config::SessionConfig;
use crate::decode::{DecodedTrial, Reconstruction};
use crate::event::SessionEvent;
use crate::session::ReplaySource;
use crate::sim::design::RunKind;
use crate::sim::{run_kinds, simulate_runs, SimConfig, SimError};
use crate::sink::{Sink, SinkError};
use crate::startup::Startup;

/// The demo's feedback target: a prompt in the demo encoder's vocabulary.
pub const DEMO_TARGET: &str = "a large red circle";

/// The demo subject's simulation: `brainmclip simulate --out sim-demo --seed 0 --train-runs 36
/// --test-runs 5` is what `calibration/demo` was calibrated on.
pub const DEMO_SEED: u64 = 0;
pub const DEMO_TRAIN_RUNS: usize = 36;
pub const DEMO_TEST_RUNS: usize = 5;

/// The files each shipped model needs.
const CALIBRATION_FILES: &[&str] = &[
    "projector.json",
    "projector.mpk",
    "normalisation.safetensors",
];
const GENERATOR_FILES: &[&str] = &["generator.json", "generator.mpk"];
const ENCODER_FILES: &[&str] = &["config.json", "model.safetensors", "tokenizer.json"];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Asset(#[from] AssetError),
    #[error("--test-run {asked}: the demo subject has test runs 1 to {runs}")]
    TestRun { asked: usize, runs: usize },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Simulate(#[from] SimError),
    #[error(transparent)]
    Speed(#[from] crate::session::SessionError),
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the simulated run, the export folder and the session go.
    pub out: PathBuf,
    /// Which held-out test run (1 = the first).
    pub test_run: usize,
    /// Speed over the scanner ("max" or a factor).
    pub speed: String,
    pub calibration: PathBuf,
    pub generator: PathBuf,
    /// A folder holding `assets/` and `calibration/` (otherwise looked for, see `assets`).
    pub assets: Option<PathBuf>,
    pub steps: usize,
    pub guidance: f64,
    /// Where the projector, generator and CLIP towers run (`decode.device`).
    pub device: crate::model::device::DeviceChoice,
}

/// A demo ready to run: its session, its replay and what scoring needs.
pub struct PreparedDemo {
    pub config: SessionConfig,
    pub replay: ReplaySource,
    /// The simulated BIDS folder (stimuli are relative to it).
    pub bids: PathBuf,
    pub encoder: PathBuf,
    /// The simulator's run number.
    pub run: usize,
}

/// The shipped models, found and checked: (calibration, generator, encoder).
pub fn find_models(o: &DemoOptions) -> Result<(PathBuf, PathBuf, PathBuf), DemoError> {
    let roots = search_roots(o.assets.as_deref());
    let calibration = find(
        "the demo calibration",
        &o.calibration,
        CALIBRATION_FILES,
        &roots,
    )?;
    let generator = find("the demo generator", &o.generator, GENERATOR_FILES, &roots)?;
    let info_path = generator.join("generator.json");
    let info: serde_json::Value = std::fs::read_to_string(&info_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| DemoError::File {
            path: info_path.clone(),
            message: "not a readable JSON generator description".into(),
        })?;
    let encoder = info["encoder"].as_str().ok_or_else(|| DemoError::File {
        path: info_path.clone(),
        message: "no \"encoder\" folder named".into(),
    })?;
    // The encoder is named relative to the repository (or absolutely).
    let mut encoder_roots = vec![generator.join("../..")];
    encoder_roots.extend(roots);
    let encoder = find(
        "the demo encoder",
        Path::new(encoder),
        ENCODER_FILES,
        &encoder_roots,
    )?;
    Ok((calibration, generator, encoder))
}

/// Checks every model first (nothing is simulated when one is missing), then simulates the
/// test run (or reuses its simulation) and builds its session; each step is reported to
/// `startup`.
pub fn prepare(o: &DemoOptions, startup: &Startup) -> Result<PreparedDemo, DemoError> {
    let finding = startup.step("finding the shipped models");
    let (calibration, generator, encoder) = find_models(o)?;
    finding.done(Some(calibration.display().to_string()));
    let speed = ReplaySource::parse_speed(&o.speed)?;
    let sim = SimConfig {
        train_runs: DEMO_TRAIN_RUNS,
        test_runs: DEMO_TEST_RUNS,
        ..SimConfig::default()
    };
    let test_runs: Vec<usize> = run_kinds(&sim, DEMO_SEED)
        .into_iter()
        .filter(|(_, k)| *k == RunKind::Test)
        .map(|(r, _)| r)
        .collect();
    let run = *test_runs
        .get(o.test_run.wrapping_sub(1))
        .ok_or(DemoError::TestRun {
            asked: o.test_run,
            runs: test_runs.len(),
        })?;
    let bids = o.out.join("sim");
    let key = sim_cache::key(&sim, DEMO_SEED, run);
    let simulating = startup.step(format!("simulating test run {}", o.test_run));
    let bold = match sim_cache::cached_run(&bids, &key) {
        Some(bold) => {
            tracing::info!(
                "test run {run} of the demo subject: the simulation in {} is current, reused",
                bids.display()
            );
            simulating.done(Some(format!("reused from {}", bids.display())));
            bold
        }
        None => {
            tracing::info!(
                "simulating test run {run} of the demo subject (seed {DEMO_SEED}) into {}",
                bids.display()
            );
            if bids.exists() {
                // A stale or partial simulation: start clean, so the stamp lists only this one.
                std::fs::remove_dir_all(&bids).map_err(|e| DemoError::File {
                    path: bids.clone(),
                    message: format!("cannot clear: {e}"),
                })?;
            }
            let summary = simulate_runs(&sim, &bids, DEMO_SEED, Some(&[run]))?;
            let bold = summary
                .runs
                .first()
                .cloned()
                .ok_or_else(|| DemoError::File {
                    path: bids.clone(),
                    message: "the simulation wrote no run".into(),
                })?;
            if let Err(e) = sim_cache::record(&bids, &key, &bold) {
                tracing::warn!(
                    "{}: cannot record the simulation for reuse: {e}",
                    bids.display()
                );
            }
            simulating.done(Some(format!(
                "into {}, kept for the next start",
                bids.display()
            )));
            bold
        }
    };
    let sub = bids.join(format!("sub-{}", sim.subject));
    let events = PathBuf::from(
        bold.to_string_lossy()
            .replace("_bold.nii.gz", "_events.tsv"),
    );
    let mut config = SessionConfig::default();
    config.session.tr = sim.tr;
    config.session.volumes = sim.volumes_per_run as u32;
    config.ingest.dir = o.out.join("export");
    let p = &mut config.preprocess;
    p.dummy_scans = sim.dummy_scans as u32;
    p.labels = Some(sub.join(format!("anat/sub-{}_desc-visual_dseg.nii.gz", sim.subject)));
    p.label_table = Some(sub.join(format!("anat/sub-{}_desc-visual_dseg.tsv", sim.subject)));
    p.events = Some(events);
    config.output.dir = o.out.join("session");
    config.feedback.address = "127.0.0.1:0".into();
    let d = &mut config.decode;
    d.calibration = Some(calibration);
    d.generator = Some(generator);
    d.steps = o.steps;
    d.guidance = o.guidance;
    d.device = o.device;
    // The window shows each trial's stimulus and its top-3 among the run's images; the
    // feedback value is the cosine with a text target, as a neurofeedback session would use.
    d.encoder = Some(encoder.clone());
    d.stimuli = Some(bids.clone());
    d.gallery = Some(bids.join("stimuli"));
    d.target_text = Some(DEMO_TARGET.to_string());
    // A fresh export folder and session: a rerun must not see the last run's files.
    for dir in [&config.ingest.dir, &config.output.dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| DemoError::File {
                path: dir.clone(),
                message: format!("cannot clear: {e}"),
            })?;
        }
    }
    Ok(PreparedDemo {
        config,
        replay: ReplaySource { path: bold, speed },
        bids,
        encoder,
        run,
    })
}

/// What the demo scores: every decoded trial and drawn image, when each volume was seen and
/// when the window showed each image.
#[derive(Default)]
pub struct Collected {
    pub decoded: Vec<DecodedTrial>,
    pub reconstructions: Vec<Reconstruction>,
    pub volume_seen_ns: Vec<(u32, u64)>,
    /// Each trial's volumes (scanner indices).
    pub trial_volumes: Vec<(u64, Vec<u32>)>,
    pub displayed_ns: Vec<(u64, u64)>,
    pub skipped: usize,
}

/// A sink that keeps what the demo scores.
pub struct Collector(pub Arc<Mutex<Collected>>);

impl Sink for Collector {
    fn name(&self) -> &str {
        "demo-collector"
    }

    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            SessionEvent::Volume(v) => c.volume_seen_ns.push((v.index, v.seen_ns)),
            SessionEvent::Sample(s) => c.trial_volumes.push((s.trial, s.volumes.clone())),
            SessionEvent::Decoded(d) => c.decoded.push(d.clone()),
            SessionEvent::Generated(r) => c.reconstructions.push(r.clone()),
            SessionEvent::Displayed {
                trial,
                displayed_ns,
            } => c.displayed_ns.push((*trial, *displayed_ns)),
            SessionEvent::Ended(s) => c.skipped = s.skipped_by_generator,
            _ => {}
        }
        Ok(())
    }
}
