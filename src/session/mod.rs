//! The live run as one value: `Session::start` builds the stages from a `SessionConfig` (and an
//! optional in-process replay), starts them on their own threads, and routes what they make as
//! one typed stream of `SessionEvent`s to the sinks; `wait` returns when every stage and sink
//! has finished. The CLI, the demo and the tests all run the daemon through this type.
//!
//! ```text
//!  ingest ──► preprocess ──► hub ──► sinks: recorder, feedback, console, viewer, (caller's)
//!  (watch,    (motion,        │ ▲
//!   replay)    masks, z,      ▼ │ decoded, drawn
//!              trials)      decode ──► generate
//! ```
//! The hub (this module's thread) is the only place events meet: preprocessing's events go
//! to the sinks as they come, each trial's sample is then handed to the decode stage, and what
//! decoding and generation make comes back to the hub, so a sample always precedes its decoded
//! trial and a slow decode never delays the log of volumes. Commands (a new feedback target,
//! the window's telemetry, stop) come in on one channel. Back-pressure follows the design: no
//! volume is dropped before preprocessing, every trial is decoded, the generator takes the
//! newest trial, and a sink that falls behind misses events rather than stall anything.
//! A session killed mid-run is continued by a new part (`resume`).

pub mod resume;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::clock::now_ns;
use crate::config::SessionConfig;
use crate::decode::stage::DecodeInput;
use crate::decode::{DecodeError, DecodeEvent, DecodeSetup, DecodeStage};
use crate::event::{MonitorReport, RunSummary, SessionCommand, SessionEvent, SessionStarted};
use crate::ingest::replay::{run_replay, ReplayError, ReplayOptions, Source};
use crate::ingest::ReadError;
use crate::preprocess::stage::{PreprocessError, PreprocessEvent, PreprocessStage};
use crate::sink::console::Console;
use crate::sink::feedback::{FeedbackError, FeedbackServer, FeedbackSink};
use crate::sink::line_file::WriteFaults;
use crate::sink::recorder::Recorder;
use crate::sink::{Fanout, Sink, SinkError, SinkProblem, QUEUE};
use crate::startup::{Startup, Step};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("output.dir: {0}")]
    Recorder(SinkError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    #[error("replay {path}: {source}")]
    ReplaySource {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("ingest.series: {0}")]
    Series(String),
    #[error("replay {0}: no TR in the header; set session.tr")]
    NoTr(PathBuf),
    #[error("{path}: cannot create: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--speed {0:?}: expected a positive number or \"max\"")]
    Speed(String),
    #[error("cannot start the session's thread: {0}")]
    Thread(std::io::Error),
    #[error("the session's thread panicked: {0}")]
    Panicked(String),
    #[error("--resume: {0}")]
    Resume(#[from] resume::ResumeError),
}

/// A recorded run fed into `ingest.dir` in-process, as the scanner would write it, `speed`
/// times faster than its TR.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    pub path: PathBuf,
    pub speed: f64,
}

/// `--speed max`: fifty times the scanner's pace, which this pipeline sustains on two cores for
/// 64x64x36 volumes (read ~1 ms, realign ~8 ms per volume at a 30 ms TR).
pub const MAX_REPLAY_SPEED: f64 = 50.0;

impl ReplaySource {
    /// `speed` as a user writes it: a positive factor, or "max".
    pub fn new(path: PathBuf, speed: &str) -> Result<ReplaySource, SessionError> {
        Ok(ReplaySource {
            path,
            speed: ReplaySource::parse_speed(speed)?,
        })
    }

    /// A speed as a user writes it ("max" or a positive factor) as a factor.
    pub fn parse_speed(speed: &str) -> Result<f64, SessionError> {
        let factor = match speed {
            "max" => MAX_REPLAY_SPEED,
            other => other
                .parse::<f64>()
                .map_err(|_| SessionError::Speed(other.into()))?,
        };
        if factor.is_finite() && factor > 0.0 {
            Ok(factor)
        } else {
            Err(SessionError::Speed(speed.into()))
        }
    }
}

/// Everything a session is started from.
pub struct SessionSpec {
    pub config: SessionConfig,
    pub replay: Option<ReplaySource>,
    /// Sinks beyond the session's own (recorder, feedback server, console): the window's, a
    /// caller's collector, a test's.
    pub sinks: Vec<Box<dyn Sink>>,
    /// Commands from outside (the window), besides `Session::commands`.
    pub commands: Option<Receiver<SessionCommand>>,
    /// How long the sinks may take to finish after the run ends before they are left behind.
    pub sink_grace: Duration,
    /// Where start-up steps (loading, embedding, waiting for the first volume) are reported.
    pub startup: Startup,
    /// A switch that makes the recorder's writes fail on demand (drills and tests).
    pub write_faults: WriteFaults,
    /// Continue the unfinished session in `output.dir` (`run --resume`) instead of starting
    /// a new one beside it.
    pub resume: bool,
}

impl SessionSpec {
    pub fn new(config: SessionConfig) -> SessionSpec {
        SessionSpec {
            config,
            replay: None,
            sinks: Vec::new(),
            commands: None,
            sink_grace: Duration::from_secs(30),
            startup: Startup::silent(),
            write_faults: WriteFaults::default(),
            resume: false,
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone)]
pub struct SessionOutcome {
    pub summary: RunSummary,
    pub output_dir: PathBuf,
    /// The event log and QA table, under their final names.
    pub log: PathBuf,
    pub qa: PathBuf,
    /// What went wrong in sinks (also in the log while the recorder ran).
    pub sink_problems: Vec<SinkProblem>,
    /// Why the in-process replay stopped early, if it did.
    pub replay_error: Option<String>,
}

pub struct Session {
    stop: Arc<AtomicBool>,
    commands: Sender<SessionCommand>,
    hub: Option<JoinHandle<SessionOutcome>>,
    replay: Option<JoinHandle<Result<crate::ingest::replay::Manifest, ReplayError>>>,
    feedback_address: Option<std::net::SocketAddr>,
}

impl Session {
    /// Loads and checks everything (calibration, generator, masks, events, the feedback port),
    /// then starts the stages. Nothing is watched before every check has passed.
    pub fn start(spec: SessionSpec) -> Result<Session, SessionError> {
        let SessionSpec {
            mut config,
            replay,
            sinks: extra_sinks,
            commands: external,
            sink_grace,
            startup,
            write_faults,
            resume,
        } = spec;
        let config_sha256 = resume::config_fingerprint(&config);
        let resume = if resume {
            // Every volume on disk is read again to rebuild the rolling statistics.
            config.ingest.existing = crate::config::ExistingFiles::Process;
            Some(resume::prepare(&config.output.dir, &config_sha256)?)
        } else {
            None
        };
        let replay_options = match &replay {
            Some(source) => Some(prepare_replay(&mut config, source)?),
            None => None,
        };
        let recorder = Recorder::create_with_faults(&config.output.dir, write_faults)
            .map_err(SessionError::Recorder)?;
        let (log, qa) = recorder.paths();
        let setup = DecodeSetup::load(&config, &startup)?;
        let (gallery, feedback_label) = setup
            .as_ref()
            .map_or((None, None), |s| (s.gallery(), s.feedback_label()));
        let device = setup.as_ref().map_or(
            crate::model::device::ComputeDevice::Cpu,
            DecodeSetup::device,
        );
        let (decode_tx, decode_events) = unbounded();
        let decode = setup
            .map(|s| DecodeStage::start(s, decode_tx))
            .transpose()?;
        let server = if config.feedback.enabled {
            let f = &config.feedback;
            Some(FeedbackServer::start(&f.address, f.into())?)
        } else {
            None
        };
        let feedback_address = server.as_ref().map(|s| s.address());
        let markers = server.as_ref().map(|s| s.markers().clone());
        let preprocess = PreprocessStage::start(&config, markers)?;
        let stop = preprocess.stop_flag();

        // The session's own sinks, then the caller's.
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(recorder), Box::new(Console)];
        if let Some(server) = server {
            sinks.push(Box::new(FeedbackSink::new(server)));
        }
        sinks.extend(extra_sinks);

        let started = SessionStarted {
            version: env!("CARGO_PKG_VERSION"),
            device: device.to_string(),
            tr_s: config.session.tr,
            volumes: (config.session.volumes > 0).then_some(config.session.volumes),
            first_index: config.session.first_index,
            watching: config.ingest.dir.clone(),
            output_dir: config.output.dir.clone(),
            feedback_address: feedback_address.map(|a| a.to_string()),
            feedback_label,
            // Absolute, so the report finds the stimuli from wherever it is made.
            stimuli: config
                .decode
                .stimuli
                .as_ref()
                .map(|s| std::fs::canonicalize(s).unwrap_or_else(|_| s.clone())),
            replay: replay.as_ref().map(|r| r.path.clone()),
            monitor: config.monitor.clone(),
            at_ns: now_ns(),
            config_sha256,
            resumes: resume.as_ref().map(|r| r.from.clone()),
            gallery,
        };
        let (commands, command_inbox) = unbounded();
        let hub = Hub {
            preprocess,
            decode,
            decode_events,
            fanout: Fanout::start(sinks, QUEUE),
            commands: command_inbox,
            external: external.unwrap_or_else(crossbeam_channel::never),
            stop: stop.clone(),
            summary: RunSummary::default(),
            output_dir: config.output.dir.clone(),
            log,
            qa,
            sink_grace,
            first_volume: Some(startup.step("waiting for the first volume")),
            resume,
        };
        let hub = std::thread::Builder::new()
            .name("session".into())
            .spawn(move || hub.run(started))
            .map_err(SessionError::Thread)?;
        let replay = replay_options.map(|mut o| {
            o.stop = Some(stop.clone());
            std::thread::spawn(move || run_replay(&o))
        });
        Ok(Session {
            stop,
            commands,
            hub: Some(hub),
            replay,
            feedback_address,
        })
    }

    /// Where the feedback server listens (its port when `feedback.address` asked for port 0).
    pub fn feedback_address(&self) -> Option<std::net::SocketAddr> {
        self.feedback_address
    }

    /// Commands to the running session.
    pub fn commands(&self) -> Sender<SessionCommand> {
        self.commands.clone()
    }

    /// Set to end the run (Ctrl-C, a closed window): what was received is still processed and
    /// logged.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits until the run has ended and every sink has finished (or its grace has passed).
    pub fn wait(mut self) -> Result<SessionOutcome, SessionError> {
        let hub = self.hub.take().map(JoinHandle::join);
        let replay_error = match self.replay.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => Some(e.to_string()),
            Some(Err(_)) => Some("the replay thread panicked".into()),
            _ => None,
        };
        let mut outcome = match hub {
            Some(Ok(outcome)) => outcome,
            Some(Err(payload)) => {
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(SessionError::Panicked(text));
            }
            None => return Err(SessionError::Panicked("waited for twice".into())),
        };
        if let Some(e) = &replay_error {
            tracing::warn!("replay: {e}");
        }
        outcome.replay_error = replay_error;
        Ok(outcome)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(hub) = self.hub.take() {
            let _ = hub.join();
        }
    }
}

/// Sets the session's clock to the replay's pace and returns the replay's options.
fn prepare_replay(
    config: &mut SessionConfig,
    source: &ReplaySource,
) -> Result<ReplayOptions, SessionError> {
    let series = crate::ingest::dicom::SeriesChoice::parse(&config.ingest.series)
        .map_err(|e| SessionError::Series(e.to_string()))?;
    let recorded = Source::open_with_series(&source.path, config.ingest.max_voxels, &series)
        .map_err(|e| SessionError::ReplaySource {
            path: source.path.clone(),
            source: e,
        })?;
    let tr = if config.session.tr > 0.0 {
        config.session.tr
    } else {
        recorded
            .tr_s()
            .ok_or_else(|| SessionError::NoTr(source.path.clone()))?
    };
    // The run ends when every recorded volume is accounted for, not after a quiet spell.
    if config.session.volumes == 0 {
        config.session.volumes = recorded.n_volumes() as u32;
    }
    if recorded.is_dicom() {
        // DICOM volumes carry their own indices (usually from 1).
        config.session.first_index = recorded.index_at(0, config.session.first_index);
    }
    // The scanner clock runs `speed` times faster: deadlines follow.
    config.session.tr = tr;
    config.session.clock_speed = source.speed;
    let dir = &config.ingest.dir;
    std::fs::create_dir_all(dir).map_err(|e| SessionError::Folder {
        path: dir.clone(),
        source: e,
    })?;
    let mut o = ReplayOptions::new(&source.path, dir);
    o.speed = source.speed;
    o.tr_s = Some(tr);
    o.manifest = Some(config.output.dir.join("replay_manifest.json"));
    o.series = config.ingest.series.clone();
    Ok(o)
}

/// The session's thread: where the stages' events meet and go out to the sinks.
struct Hub {
    preprocess: PreprocessStage,
    decode: Option<DecodeStage>,
    decode_events: Receiver<DecodeEvent>,
    fanout: Fanout,
    commands: Receiver<SessionCommand>,
    external: Receiver<SessionCommand>,
    stop: Arc<AtomicBool>,
    summary: RunSummary,
    output_dir: PathBuf,
    log: PathBuf,
    qa: PathBuf,
    sink_grace: Duration,
    /// The start-up's last step, done when the first volume (or dummy) arrives.
    first_volume: Option<Step>,
    /// What earlier parts of a resumed session recorded (not sent again).
    resume: Option<resume::ResumePoint>,
}

impl Hub {
    fn emit(&mut self, event: SessionEvent) {
        self.fanout.send(Arc::new(event));
    }

    fn error(&mut self, stage: &str, message: String) {
        self.emit(SessionEvent::Error {
            stage: stage.into(),
            message,
            at_ns: now_ns(),
        });
    }

    fn run(mut self, started: SessionStarted) -> SessionOutcome {
        self.emit(SessionEvent::Started(started));
        let never_preprocess = crossbeam_channel::never();
        let never_decode = crossbeam_channel::never();
        let never_problems = crossbeam_channel::never();
        let mut preprocessing = true;
        let mut decoding = self.decode.is_some();
        let problems = self.fanout.problems().clone();
        while preprocessing || decoding {
            let preprocess_events = if preprocessing {
                self.preprocess.events().clone()
            } else {
                never_preprocess.clone()
            };
            let decode_events = if decoding {
                self.decode_events.clone()
            } else {
                never_decode.clone()
            };
            let problem_events = if preprocessing || decoding {
                problems.clone()
            } else {
                never_problems.clone()
            };
            crossbeam_channel::select! {
                recv(preprocess_events) -> event => match event {
                    Ok(event) => preprocessing = self.preprocessed(event),
                    Err(_) => preprocessing = false,
                },
                recv(decode_events) -> event => match event {
                    Ok(DecodeEvent::Finished { skipped }) => {
                        self.summary.skipped_by_generator = skipped;
                        decoding = false;
                    }
                    Ok(event) => self.decoded(event),
                    Err(_) => decoding = false,
                },
                recv(problem_events) -> problem => {
                    if let Ok(p) = problem {
                        self.error(&format!("sink {}", p.sink), p.message);
                    }
                },
                recv(self.commands) -> command => {
                    if let Ok(c) = command {
                        self.command(c);
                    }
                },
                recv(self.external) -> command => match command {
                    Ok(c) => self.command(c),
                    Err(_) => self.external = crossbeam_channel::never(),
                },
            }
            if !preprocessing {
                // No more samples: the decode stage finishes what it has and says so.
                if let Some(d) = self.decode.as_mut() {
                    d.close();
                }
            }
        }
        if let Some(step) = self.first_volume.take() {
            step.done(Some("the run ended before any volume".into()));
        }
        // Problems the sinks reported meanwhile go in the log before its last record.
        for p in problems.try_iter() {
            self.error(&format!("sink {}", p.sink), p.message);
        }
        self.summary.at_ns = now_ns();
        let summary = self.summary.clone();
        self.emit(SessionEvent::Ended(summary.clone()));
        // The decode stage's thread is done; joining it here keeps its drop off the sinks' time.
        self.decode = None;
        let sink_problems = self.fanout.finish(self.sink_grace);
        for p in &sink_problems {
            tracing::error!("sink {}: {}", p.sink, p.message);
        }
        SessionOutcome {
            summary,
            output_dir: self.output_dir,
            log: self.log,
            qa: self.qa,
            sink_problems,
            replay_error: None,
        }
    }

    /// One preprocessing event out to the sinks (a sample then on to decoding); false once
    /// preprocessing has ended.
    fn preprocessed(&mut self, event: PreprocessEvent) -> bool {
        if self.recorded_before(&event) {
            if let PreprocessEvent::Volume(_) = event {
                self.summary.rebuilt_volumes += 1;
            }
            return true;
        }
        if matches!(
            event,
            PreprocessEvent::Volume(_) | PreprocessEvent::Dummy { .. }
        ) {
            if let Some(step) = self.first_volume.take() {
                step.done(None);
            }
        }
        match event {
            PreprocessEvent::Volume(v) => {
                let monitor = v.monitor.clone().map(|figures| MonitorReport {
                    index: v.index,
                    figures,
                });
                self.emit(SessionEvent::Volume(v));
                if let Some(m) = monitor {
                    self.emit(SessionEvent::Monitor(m));
                }
            }
            PreprocessEvent::QualityMaps(q) => self.emit(SessionEvent::QualityMaps(q)),
            PreprocessEvent::Dummy { index } => self.emit(SessionEvent::Dummy { index }),
            PreprocessEvent::Ingest(e) => self.emit(SessionEvent::Gap(e)),
            PreprocessEvent::Sample(s) => {
                let input = DecodeInput::Sample {
                    sample: s.sample.clone(),
                    sample_ns: s.sample_ns,
                };
                self.emit(SessionEvent::Sample(s));
                if let Some(d) = &self.decode {
                    if !d.send(input) {
                        self.error("decode", "the decode stage has stopped".into());
                    }
                }
            }
            PreprocessEvent::Error(message) => self.error("preprocess", message),
            PreprocessEvent::Ended {
                ingest,
                samples,
                guarded_scores,
            } => {
                self.summary.counts = ingest;
                self.summary.samples = samples;
                self.summary.guarded_z_scores = guarded_scores;
                return false;
            }
        }
        true
    }

    /// An event an earlier part of a resumed session already recorded and sent: its volume
    /// only rebuilds the rolling statistics.
    fn recorded_before(&self, event: &PreprocessEvent) -> bool {
        let Some(point) = &self.resume else {
            return false;
        };
        match event {
            PreprocessEvent::Volume(v) => point.covers_index(v.index),
            PreprocessEvent::Dummy { index } => point.covers_index(*index),
            PreprocessEvent::Sample(s) => point.trials.contains(&s.trial),
            PreprocessEvent::Ingest(e) => e.index().is_some_and(|i| point.covers_index(i)),
            _ => false,
        }
    }

    fn decoded(&mut self, event: DecodeEvent) {
        match event {
            DecodeEvent::Decoded(d) => {
                self.summary.decoded += 1;
                self.emit(SessionEvent::Decoded(d));
            }
            DecodeEvent::Generated(r) => {
                self.summary.generated += 1;
                self.emit(SessionEvent::Generated(r));
            }
            DecodeEvent::TargetChanged { text, at_ns } => {
                self.emit(SessionEvent::TargetChanged { text, at_ns })
            }
            DecodeEvent::Error(message) => self.error("decode", message),
            DecodeEvent::Finished { .. } => {}
        }
    }

    fn command(&mut self, command: SessionCommand) {
        match command {
            SessionCommand::Stop => self.stop.store(true, Ordering::SeqCst),
            SessionCommand::Displayed {
                trial,
                displayed_ns,
            } => self.emit(SessionEvent::Displayed {
                trial,
                displayed_ns,
            }),
            SessionCommand::DisplayPaused(paused) => self.emit(SessionEvent::DisplayPaused {
                paused,
                at_ns: now_ns(),
            }),
            SessionCommand::SetTargetText(text) => {
                let sent = self
                    .decode
                    .as_ref()
                    .is_some_and(|d| d.send(DecodeInput::SetTargetText(text.clone())));
                if !sent {
                    self.error(
                        "decode",
                        format!(
                            "feedback target {text:?}: nothing is decoded now (no \
                             decode.calibration, or the run has ended)"
                        ),
                    );
                }
            }
        }
    }
}
