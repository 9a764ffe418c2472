//! The soak: many volumes (10 000 by default) at a TR of 20-50 ms through the whole live path of
//! the demo (ingest from a watched export folder, realignment, masks, rolling z-scores, trials,
//! decoding and drawing with the shipped demo models, the feedback server with two subscribers),
//! measuring what a long session would reveal: memory that creeps, volumes lost or misread,
//! latency that drifts.
//!
//! How the volumes are made: the demo's held-out run (200 volumes at TR 1.5 s, simulated once
//! and kept by `demo::prepare`) is played cyclically with continuous numbering. Its 4 dummy
//! scans are written once, at the start; every later cycle repeats volumes 4..200, so the
//! session sees one long run. The events file is extended to match (each cycle's onsets moved
//! by the cycle's length), so every cycle has the run's 70 trials on the volumes they belong to.
//! The scanner's clock runs `1.5 s / TR` times faster, as `brainmclip run --replay` does.
//!
//! How a misread is found: every source volume's expected figures (global signal, motion
//! estimate, dims, non-finite voxels) come from preprocessing the recorded run offline through
//! the same stage (`PreprocessStage::offline`); each live volume must match its source volume's
//! within a tolerance far below the differences between volumes (the report says how many source
//! volumes the check tells apart).
//!
//! Used by `bench/soak/main.rs` (the full run and its budgets) and `tests/soak.rs` (the CI run).

// The example and the CI test each use a different part of this module.
#![allow(dead_code)]

#[path = "feed.rs"]
mod feed;
#[path = "report.rs"]
mod report;

pub use report::SoakReport;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brainmclip::config::SessionConfig;
use brainmclip::demo::{prepare, DemoError, DemoOptions};
use brainmclip::ingest::replay::Source;
use brainmclip::ingest::ReadError;
use brainmclip::model::device::DeviceChoice;
use brainmclip::preprocess::stage::{
    PreprocessError, PreprocessEvent, PreprocessStage, VolumeReport,
};
use brainmclip::preprocess::trials::{read_events, Trial, TrialError};
use brainmclip::session::{Session, SessionError, SessionSpec};
use brainmclip::startup::Startup;

pub const DEFAULT_VOLUMES: u32 = 10_000;
pub const DEFAULT_TR_MS: f64 = 30.0;
/// Ingest declares a volume missing this many TRs after it was due. The default 1.5 leaves
/// 15 ms of slack at a 30 ms TR, which an OS hiccup on a loaded 2-core machine (the generator
/// drawing in the same process) overruns although nothing is lost; tests/session.rs uses 4 for
/// the same reason. A volume that is really lost is still declared missing within 0.12 s.
pub const DEFAULT_DEADLINE_TR: f64 = 4.0;
/// Wall-clock seconds without any file before ingest ends the run. The default 10 TRs is 0.3 s
/// at a 30 ms TR: a stall that short should show up as late volumes, not end the soak.
const QUIET_S: f64 = 10.0;
/// How long the offline pass that gives each source volume's expected figures may take.
const OFFLINE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Volumes written, numbered continuously from the session's first index.
    pub volumes: u32,
    /// Wall-clock milliseconds between volumes (the scanner's TR, sped up).
    pub tr_ms: f64,
    /// Where the simulated run (kept between soaks), the export folder and the session go.
    pub work: PathBuf,
    /// `ingest.deadline_tr` for the session.
    pub deadline_tr: f64,
    /// Rank every decoded trial in the run's 2 637-image gallery (its first embedding takes
    /// about 50 s on 2 cores; kept in the work folder afterwards).
    pub gallery: bool,
    /// Leave every volume file in the export folder, as a scanner does (the folder's listing
    /// then grows through the run, as it would in a long session); otherwise each file is
    /// removed once preprocessed, so 10 000 volumes do not need gigabytes of disk.
    pub keep_files: bool,
    /// Start-up steps and a line every 500 volumes on stderr.
    pub progress: bool,
}

impl SoakOptions {
    pub fn new(work: impl Into<PathBuf>) -> SoakOptions {
        SoakOptions {
            volumes: DEFAULT_VOLUMES,
            tr_ms: DEFAULT_TR_MS,
            work: work.into(),
            deadline_tr: DEFAULT_DEADLINE_TR,
            gallery: true,
            keep_files: true,
            progress: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("--{option} {value}: expected {expected}")]
    BadOption {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("offline preprocessing of the source run: {0}")]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Events(#[from] TrialError),
    #[error("{path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Run(String),
}

/// Which source volume is written at which position, and when.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub volumes: u32,
    /// The scanner index of position 0 (`session.first_index`).
    pub first_index: u32,
    /// Volumes in the recorded run, dummies included.
    pub run_length: usize,
    pub dummies: usize,
    pub scanner_tr_s: f64,
    pub tr_ms: f64,
}

impl Schedule {
    /// How many times faster than the scanner the volumes come.
    pub fn speed(&self) -> f64 {
        self.scanner_tr_s * 1e3 / self.tr_ms
    }

    /// Volumes per cycle after the first (the dummies are not repeated).
    pub fn cycle_length(&self) -> usize {
        self.run_length - self.dummies
    }

    /// The recorded run's volume written at `position` (0-based).
    pub fn source_position(&self, position: usize) -> usize {
        if position < self.run_length {
            position
        } else {
            self.dummies + (position - self.run_length) % self.cycle_length()
        }
    }

    /// Cycles of the run's trials the events file needs.
    pub fn cycles(&self) -> usize {
        let n = self.volumes as usize;
        if n <= self.run_length {
            1
        } else {
            1 + (n - self.run_length).div_ceil(self.cycle_length())
        }
    }

    /// The position of a scanner index, when it is one of the soak's.
    pub fn position_of(&self, index: u32) -> Option<usize> {
        index
            .checked_sub(self.first_index)
            .map(|k| k as usize)
            .filter(|&k| k < self.volumes as usize)
    }

    pub fn file_name(index: u32) -> String {
        format!("vol_{index:05}.nii.gz")
    }
}

/// What preprocessing makes of one source volume, for recognising it in the live stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub global_signal: f32,
    pub motion: Option<[f32; 6]>,
    pub dims: [usize; 3],
    pub non_finite: usize,
}

impl Signature {
    fn of(v: &VolumeReport) -> Signature {
        Signature {
            global_signal: v.global_signal,
            motion: v.motion,
            dims: v.dims,
            non_finite: v.non_finite,
        }
    }
}

fn check_options(o: &SoakOptions) -> Result<(), SoakError> {
    let bad = |option, value: String, expected| {
        Err(SoakError::BadOption {
            option,
            value,
            expected,
        })
    };
    if o.volumes == 0 {
        return bad("volumes", o.volumes.to_string(), "at least 1");
    }
    if !(o.tr_ms.is_finite() && o.tr_ms > 0.0) {
        return bad("tr-ms", o.tr_ms.to_string(), "a positive number of ms");
    }
    if !(o.deadline_tr.is_finite() && o.deadline_tr >= 1.0) {
        return bad("deadline-tr", o.deadline_tr.to_string(), "a number >= 1");
    }
    Ok(())
}

/// The demo's own options: the shipped models, its first held-out test run.
fn demo_options(work: &Path) -> DemoOptions {
    DemoOptions {
        out: work.to_owned(),
        test_run: 1,
        // Parsed only: the soak writes the volumes itself.
        speed: "max".into(),
        calibration: PathBuf::from("calibration/demo"),
        generator: PathBuf::from("assets/demo-generator"),
        assets: None,
        steps: 4,
        guidance: 1.0,
        device: DeviceChoice::Auto,
    }
}

/// Runs the soak to the end of the session and reports what it measured. An error means the
/// soak could not run; a run that misses its budgets is a report that says so.
pub fn run_soak(options: SoakOptions) -> Result<SoakReport, SoakError> {
    check_options(&options)?;
    let began = Instant::now();
    let startup = if options.progress {
        Startup::silent().console()
    } else {
        Startup::silent()
    };
    std::fs::create_dir_all(&options.work).map_err(|source| SoakError::Io {
        path: options.work.clone(),
        source,
    })?;
    let demo = prepare(&demo_options(&options.work), &startup)?;
    let bold = demo.replay.path.clone();
    let mut config = demo.config.clone();
    let schedule = Schedule {
        volumes: options.volumes,
        first_index: config.session.first_index,
        run_length: config.session.volumes as usize,
        dummies: config.preprocess.dummy_scans as usize,
        scanner_tr_s: config.session.tr,
        tr_ms: options.tr_ms,
    };
    if schedule.run_length <= schedule.dummies || schedule.scanner_tr_s <= 0.0 {
        return Err(SoakError::Run(format!(
            "the demo's run has {} volumes, {} dummies and TR {} s: nothing to cycle",
            schedule.run_length, schedule.dummies, schedule.scanner_tr_s
        )));
    }
    let source_events =
        config.preprocess.events.clone().ok_or_else(|| {
            SoakError::Run("the demo's session names no events file to cycle".into())
        })?;
    let events = options.work.join("soak_events.tsv");
    write_cycled_events(&read_events(&source_events)?, &schedule, &events)?;
    config.preprocess.events = Some(events);
    config.session.volumes = options.volumes;
    config.session.clock_speed = schedule.speed();
    config.ingest.deadline_tr = options.deadline_tr;
    config.ingest.quiet_trs = config.ingest.quiet_trs.max(QUIET_S * 1e3 / options.tr_ms);
    if !options.gallery {
        config.decode.gallery = None;
    }

    // The export folder and the session's output are this soak's alone: an earlier soak's
    // volumes would be taken as this run's, and its logs would number this one's.
    for dir in [&config.ingest.dir, &config.output.dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|source| SoakError::Io {
                path: dir.clone(),
                source,
            })?;
        }
    }
    // The demo's export folder is made by its in-process replay; here the soak is the scanner.
    std::fs::create_dir_all(&config.ingest.dir).map_err(|source| SoakError::Io {
        path: config.ingest.dir.clone(),
        source,
    })?;
    let expected = expected_signatures(&config, &bold, &schedule)?;
    let files = gzipped_volumes(&bold, &schedule, config.ingest.max_voxels)?;
    let collected = Arc::new(Mutex::new(feed::Collected::default()));
    let mut spec = SessionSpec::new(config.clone());
    spec.startup = startup;
    spec.sinks.push(Box::new(feed::Collector::new(
        collected.clone(),
        schedule,
        options.keep_files,
        options.progress,
    )));
    let session = Session::start(spec)?;
    let Some(address) = session.feedback_address() else {
        abandon(session);
        return Err(SoakError::Run("the session runs no feedback server".into()));
    };
    let subscribers = match feed::subscribe(address, schedule, feed::SUBSCRIBERS) {
        Ok(s) => s,
        Err(e) => {
            abandon(session);
            return Err(e);
        }
    };
    feed::sample_rss(&collected, 0, false);
    let setup_s = began.elapsed().as_secs_f64();

    let feeding = Instant::now();
    let cancel = Arc::new(AtomicBool::new(false));
    let writer = feed::start_writer(
        schedule,
        config.ingest.dir.clone(),
        files,
        cancel.clone(),
        session.stop_flag(),
    );
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            abandon(session);
            return Err(e);
        }
    };
    let outcome = session.wait();
    let run_s = feeding.elapsed().as_secs_f64();
    // The session ended early (an error): the writer has nothing left to write for.
    cancel.store(true, Ordering::SeqCst);
    let written = writer
        .join()
        .map_err(|_| SoakError::Run("the writer thread panicked".into()));
    let tallies = subscribers.finish();
    let outcome = outcome?;
    let written = written??;
    let collected = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(SoakReport::new(report::Inputs {
        schedule,
        options,
        expected,
        collected,
        subscribers: tallies,
        written,
        summary: outcome.summary,
        sink_problems: outcome
            .sink_problems
            .iter()
            .map(|p| format!("sink {}: {}", p.sink, p.message))
            .collect(),
        setup_s,
        run_s,
    }))
}

/// Ends a session that will get no volumes.
fn abandon(session: Session) {
    session.stop_flag().store(true, Ordering::SeqCst);
    if let Err(e) = session.wait() {
        eprintln!("soak: the abandoned session ended with an error: {e}");
    }
}

/// The run's trials once per cycle, each cycle's onsets moved by the cycle's length (the
/// trials' volumes then hold the same source volumes in every cycle).
fn write_cycled_events(
    trials: &[Trial],
    schedule: &Schedule,
    path: &Path,
) -> Result<(), SoakError> {
    let shift_s = schedule.cycle_length() as f64 * schedule.scanner_tr_s;
    let mut text = String::from("onset\tduration\ttrial_type\tstim_file\n");
    for cycle in 0..schedule.cycles() {
        for t in trials {
            let kind: &str = if t.trial_type.is_empty() {
                "n/a"
            } else {
                t.trial_type.as_str()
            };
            let stimulus = t.stimulus.as_deref().unwrap_or("n/a");
            text.push_str(&format!(
                "{:.6}\t{:.6}\t{kind}\t{stimulus}\n",
                t.onset_s + cycle as f64 * shift_s,
                t.duration_s
            ));
        }
    }
    std::fs::write(path, text).map_err(|source| SoakError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Each source volume's figures from the recorded run preprocessed offline by the live stage's
/// code (same reference volume, masks and motion chain as the live run's first cycle).
fn expected_signatures(
    config: &SessionConfig,
    bold: &Path,
    schedule: &Schedule,
) -> Result<Vec<Option<Signature>>, SoakError> {
    let mut offline_config = config.clone();
    // Trials play no part in a volume's figures.
    offline_config.preprocess.events = None;
    let stage = PreprocessStage::offline(&offline_config, bold)?;
    let mut expected = vec![None; schedule.run_length];
    let deadline = Instant::now() + OFFLINE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stage.events().recv_timeout(left) {
            Ok(PreprocessEvent::Volume(v)) => {
                let position = v.index.saturating_sub(schedule.first_index) as usize;
                if let Some(slot) = expected.get_mut(position) {
                    *slot = Some(Signature::of(&v));
                }
            }
            Ok(PreprocessEvent::Error(message)) => {
                return Err(SoakError::Run(format!(
                    "offline preprocessing of {}: {message}",
                    bold.display()
                )))
            }
            Ok(PreprocessEvent::Ended { .. }) => break,
            Ok(_) => {}
            Err(_) => {
                return Err(SoakError::Run(format!(
                    "offline preprocessing of {} did not finish within {} s",
                    bold.display(),
                    OFFLINE_TIMEOUT.as_secs()
                )))
            }
        }
    }
    Ok(expected)
}

/// The run's volumes as the `.nii.gz` files the scanner emulator writes (made once: the writer
/// only renames bytes into place on the TR).
fn gzipped_volumes(
    bold: &Path,
    schedule: &Schedule,
    max_voxels: usize,
) -> Result<Vec<Vec<u8>>, SoakError> {
    let unreadable = |source: ReadError| SoakError::Source {
        path: bold.to_owned(),
        source,
    };
    let mut source = Source::open(bold, max_voxels).map_err(unreadable)?;
    if source.n_volumes() < schedule.run_length {
        return Err(SoakError::Run(format!(
            "{}: {} volumes, the session expects {}",
            bold.display(),
            source.n_volumes(),
            schedule.run_length
        )));
    }
    let mut volumes = Vec::with_capacity(schedule.run_length);
    for position in 0..schedule.run_length {
        let files = source
            .next_files()
            .ok_or_else(|| {
                SoakError::Run(format!(
                    "{}: ended before volume {position}",
                    bold.display()
                ))
            })?
            .map_err(unreadable)?;
        let [(None, nii)] = files.as_slice() else {
            return Err(SoakError::Run(format!(
                "{}: volume {position} is not one NIfTI volume",
                bold.display()
            )));
        };
        volumes.push(gzip(nii).map_err(|source| SoakError::Io {
            path: bold.to_owned(),
            source,
        })?);
    }
    Ok(volumes)
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
}
