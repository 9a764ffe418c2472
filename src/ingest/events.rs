//! The typed events ingest sends downstream, and their one-line JSON form for the session log.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;

use super::volume::Volume;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `session.volumes` volumes have been accounted for.
    AllVolumes,
    /// No new file for `ingest.quiet_trs` TRs.
    Quiet,
    /// Stopped from outside (signal, window closed).
    Stopped,
}

/// Counts over a run, sent with `RunEnded`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestCounts {
    pub delivered: u32,
    pub late: u32,
    pub missing: u32,
    pub rejected: u32,
    pub duplicates: u32,
    pub non_finite_volumes: u32,
}

#[derive(Debug, Clone)]
pub enum IngestEvent {
    /// The next volume in acquisition order.
    Volume(Volume),
    /// A volume whose slot had already been declared missing or rejected: not part of the
    /// in-order stream, but valid data (usable for statistics), clearly flagged.
    Late(Volume),
    /// No valid volume with this index by its deadline; the stream moved on.
    Missing { index: u32, deadline_ns: u64 },
    /// A file that will not become a volume: never complete, corrupt, unreadable header,
    /// or geometry different from the run's. `index` is `None` when the name gave none.
    Rejected {
        index: Option<u32>,
        path: PathBuf,
        reason: String,
        at_ns: u64,
    },
    /// A second file for an index already delivered (or already waiting); ignored.
    Duplicate {
        index: u32,
        path: PathBuf,
        first_path: PathBuf,
        at_ns: u64,
    },
    /// Something worth knowing that changes no volume (e.g. a NIfTI file with no index in its
    /// name, or lost filesystem events).
    Warning { message: String, at_ns: u64 },
    /// Nothing more will come. `last_index` is the highest index delivered: with an unknown
    /// volume count, `Missing` events after it were past the end of the scan.
    RunEnded {
        reason: EndReason,
        last_index: Option<u32>,
        counts: IngestCounts,
        at_ns: u64,
    },
}

impl IngestEvent {
    /// The scanner index the event is about, if any.
    pub fn index(&self) -> Option<u32> {
        match self {
            IngestEvent::Volume(v) | IngestEvent::Late(v) => Some(v.index),
            IngestEvent::Missing { index, .. } | IngestEvent::Duplicate { index, .. } => {
                Some(*index)
            }
            IngestEvent::Rejected { index, .. } => *index,
            IngestEvent::Warning { .. } | IngestEvent::RunEnded { .. } => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            IngestEvent::Volume(_) => "volume",
            IngestEvent::Late(_) => "late",
            IngestEvent::Missing { .. } => "missing",
            IngestEvent::Rejected { .. } => "rejected",
            IngestEvent::Duplicate { .. } => "duplicate",
            IngestEvent::Warning { .. } => "warning",
            IngestEvent::RunEnded { .. } => "run_ended",
        }
    }

    /// The event as one JSON object (voxel values left out) for the session's event log.
    pub fn to_log_record(&self) -> serde_json::Value {
        let volume = |v: &Volume| {
            let mut record = json!({
                "event": self.kind(),
                "index": v.index,
                "path": v.path,
                "dims": v.geometry.dims,
                "datatype": v.geometry.datatype,
                "non_finite": v.non_finite,
                "seen_ns": v.seen_ns,
                "read_ns": v.read_ns,
            });
            if let Some(times) = &v.slice_times_s {
                record["slice_times_s"] = json!(times);
            }
            record
        };
        match self {
            IngestEvent::Volume(v) | IngestEvent::Late(v) => volume(v),
            IngestEvent::Missing { index, deadline_ns } => {
                json!({"event": "missing", "index": index, "deadline_ns": deadline_ns})
            }
            IngestEvent::Rejected {
                index,
                path,
                reason,
                at_ns,
            } => json!({
                "event": "rejected", "index": index, "path": path, "reason": reason, "at_ns": at_ns
            }),
            IngestEvent::Duplicate {
                index,
                path,
                first_path,
                at_ns,
            } => json!({
                "event": "duplicate", "index": index, "path": path, "first_path": first_path,
                "at_ns": at_ns
            }),
            IngestEvent::Warning { message, at_ns } => {
                json!({"event": "warning", "message": message, "at_ns": at_ns})
            }
            IngestEvent::RunEnded {
                reason,
                last_index,
                counts,
                at_ns,
            } => json!({
                "event": "run_ended", "reason": reason, "last_index": last_index,
                "counts": counts, "at_ns": at_ns
            }),
        }
    }
}
