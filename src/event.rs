//! The one typed stream a session gives its sinks (`SessionEvent`), the commands it takes back
//! (`SessionCommand`), and each event's JSON record as the log and the feedback clients see it.
//! It sits between the stages whose results it carries (ingest, preprocess, decode) and those
//! that consume it (sinks, the session that routes it, the window's commands).
//! Every time in here is integer nanoseconds since the Unix epoch (`crate::clock`), and every
//! record that names a volume uses the scanner's acquisition index.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::decode::retrieval::Gallery;
use crate::decode::{DecodedTrial, Reconstruction};
use crate::ingest::{IngestCounts, IngestEvent};
use crate::preprocess::monitor::MonitorFigures;
use crate::preprocess::quality::QualityMaps;
use crate::preprocess::stage::{SampleReport, VolumeReport};

/// What a session is, once, before anything else.
#[derive(Debug, Clone, Serialize)]
pub struct SessionStarted {
    pub version: &'static str,
    /// Where the models run (e.g. "CPU (2 threads)").
    pub device: String,
    pub tr_s: f64,
    /// Volumes the run should have, when known.
    pub volumes: Option<u32>,
    pub first_index: u32,
    pub watching: PathBuf,
    pub output_dir: PathBuf,
    /// The feedback server's address, when it runs.
    pub feedback_address: Option<String>,
    /// What the feedback value means (e.g. "cosine with \"a red circle\"").
    pub feedback_label: Option<String>,
    /// The folder trial `stim_file`s are relative to (for showing stimuli).
    pub stimuli: Option<PathBuf>,
    pub replay: Option<PathBuf>,
    /// The console's thresholds and limits (`[monitor]`), for the window and the report.
    pub monitor: crate::config::MonitorConfig,
    pub at_ns: u64,
    /// The configuration's SHA-256 (`session::resume` checks a resumed session by it).
    pub config_sha256: String,
    /// The part this one continues (`run --resume`).
    pub resumes: Option<crate::session::resume::ResumedFrom>,
    /// The gallery trials are ranked in (its thumbnails, for the window).
    #[serde(skip)]
    pub gallery: Option<Arc<Gallery>>,
}

/// The run's totals, in the last event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub counts: IngestCounts,
    pub samples: usize,
    pub guarded_z_scores: u64,
    pub decoded: usize,
    pub generated: usize,
    /// Trials the generator passed over while it was busy with an older one.
    pub skipped_by_generator: usize,
    /// Volumes a resumed part read again only to rebuild its rolling statistics (recorded by
    /// the earlier parts, not sent again).
    pub rebuilt_volumes: u64,
    pub at_ns: u64,
}

#[derive(Debug, Clone)]
pub enum SessionEvent {
    Started(SessionStarted),
    /// A volume through preprocessing.
    Volume(VolumeReport),
    /// The console's figures after that volume (`preprocess::monitor`).
    Monitor(MonitorReport),
    /// The run's tSNR map and carpet layout, after its last volume.
    QualityMaps(Arc<QualityMaps>),
    /// A dummy scan, left out.
    Dummy {
        index: u32,
    },
    /// An ingest record that is not an in-order volume: missing, late, rejected, duplicate, a
    /// warning, or a volume left unprocessed after preprocessing failed.
    Gap(IngestEvent),
    /// A trial's response.
    Sample(SampleReport),
    Decoded(DecodedTrial),
    Generated(Reconstruction),
    /// The window first showed a trial's reconstruction.
    Displayed {
        trial: u64,
        displayed_ns: u64,
    },
    /// The window's display was paused or resumed (the session itself goes on).
    DisplayPaused {
        paused: bool,
        at_ns: u64,
    },
    /// A new feedback target is in use.
    TargetChanged {
        text: String,
        at_ns: u64,
    },
    /// A problem in `stage` (e.g. "preprocess", "decode", "sink recorder"); the run goes on
    /// unless the stage says otherwise.
    Error {
        stage: String,
        message: String,
        at_ns: u64,
    },
    /// The last event: every stage has finished.
    Ended(RunSummary),
}

/// The data-quality figures after one volume.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorReport {
    pub index: u32,
    #[serde(flatten)]
    pub figures: MonitorFigures,
}

/// What a session is asked to do while it runs (by the window, or any caller).
#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    /// A new feedback target as text (embedded through the CLIP text tower).
    SetTargetText(String),
    /// A trial's reconstruction was first put on screen (telemetry's last timestamp).
    Displayed { trial: u64, displayed_ns: u64 },
    /// The window's display was paused or resumed.
    DisplayPaused(bool),
    /// End the run: what was received is still processed and logged.
    Stop,
}

fn with_event(value: impl Serialize, event: &str) -> serde_json::Value {
    let mut record =
        serde_json::to_value(value).unwrap_or_else(|e| json!({"error": e.to_string()}));
    record["event"] = event.into();
    record
}

impl SessionEvent {
    /// The event's record for `events.jsonl` (every field, voxel data and images left out).
    pub fn record(&self) -> serde_json::Value {
        match self {
            SessionEvent::Started(s) => with_event(s, "started"),
            SessionEvent::Volume(v) => with_event(v, "volume"),
            SessionEvent::Monitor(m) => with_event(m, "monitor"),
            SessionEvent::QualityMaps(q) => json!({
                "event": "quality_maps",
                "volumes": q.volumes,
                "dims": q.geometry.dims,
                "carpet_groups": q.carpet_groups,
            }),
            SessionEvent::Dummy { index } => json!({"event": "dummy", "index": index}),
            SessionEvent::Gap(e) => e.to_log_record(),
            SessionEvent::Sample(s) => with_event(s, "sample"),
            SessionEvent::Decoded(d) => with_event(d, "decoded"),
            SessionEvent::Generated(r) => with_event(r, "generated"),
            SessionEvent::Displayed {
                trial,
                displayed_ns,
            } => json!({"event": "displayed", "trial": trial, "displayed_ns": displayed_ns}),
            SessionEvent::DisplayPaused { paused, at_ns } => {
                json!({"event": "display_paused", "paused": paused, "at_ns": at_ns})
            }
            SessionEvent::TargetChanged { text, at_ns } => {
                json!({"event": "target", "text": text, "at_ns": at_ns})
            }
            SessionEvent::Error {
                stage,
                message,
                at_ns,
            } => json!({"event": "error", "stage": stage, "message": message, "at_ns": at_ns}),
            SessionEvent::Ended(summary) => with_event(summary, "run_ended"),
        }
    }

    /// Whether the stimulus computer's clients get this event: results and what changes
    /// them, not the session's bookkeeping (start, dummies, gaps, the window's pause).
    pub fn for_feedback_clients(&self) -> bool {
        matches!(
            self,
            SessionEvent::Volume(_)
                | SessionEvent::Monitor(_)
                | SessionEvent::Sample(_)
                | SessionEvent::Decoded(_)
                | SessionEvent::Generated(_)
                | SessionEvent::Displayed { .. }
                | SessionEvent::TargetChanged { .. }
                | SessionEvent::Error { .. }
                | SessionEvent::Ended(_)
        )
    }
}
