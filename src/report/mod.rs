//! `brainmclip report SESSION_DIR`: one self-contained HTML file about a finished (or crashed)
//! session, from the files the recorder left: `events.jsonl` (or its `.partial`), `tsnr.nii.gz`,
//! `carpet.nii.gz`, the reconstructions, the stimuli the start record points to, and the
//! demo's `summary.json` when there is one. Every image is inline, so the file opens anywhere
//! without a network. `run` and `demo` write it at the end of every run.
//!
//! It reads; it never changes a session's files. Figures are in `figures`, the page in `html`,
//! the log's reading in `log`.

mod figures;
mod html;
pub mod log;

use std::path::{Path, PathBuf};

use crate::ingest::{read_volume_file, RunReader};
use crate::sink::recorder::{numbered, partial};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Log { path: PathBuf, message: String },
    #[error("{dir}: no session log (events.jsonl or events-N.jsonl, finished or .partial); expected a session folder written by `run` or `demo`")]
    NoSession { dir: PathBuf },
    #[error("{path}: {message}")]
    Figure { path: PathBuf, message: String },
}

/// A session's files in its folder: `events.jsonl` for the first session there, `events-N`
/// and the like after it.
#[derive(Debug, Clone)]
pub struct SessionFiles {
    pub dir: PathBuf,
    pub number: u32,
}

impl SessionFiles {
    /// The session numbered `number` in `dir`, or the newest one there.
    pub fn find(dir: &Path, number: Option<u32>) -> Result<SessionFiles, ReportError> {
        let exists = |n: u32| {
            let path = dir.join(numbered("events", n, "jsonl"));
            path.exists() || partial(&path).exists()
        };
        let number = match number {
            Some(n) if exists(n) => n,
            Some(_) => None.ok_or_else(|| ReportError::NoSession { dir: dir.into() })?,
            None => (1..10_000)
                .take_while(|&n| exists(n))
                .last()
                .ok_or_else(|| ReportError::NoSession { dir: dir.into() })?,
        };
        Ok(SessionFiles {
            dir: dir.to_owned(),
            number,
        })
    }

    /// `stem.ext` of this session, or its `.partial` when only that exists (a crashed run).
    pub fn file(&self, stem: &str, ext: &str) -> PathBuf {
        let path = self.dir.join(numbered(stem, self.number, ext));
        if !path.exists() && partial(&path).exists() {
            partial(&path)
        } else {
            path
        }
    }

    pub fn report_path(&self) -> PathBuf {
        self.dir.join(numbered("report", self.number, "html"))
    }
}

/// The carpet as columns (one per volume) and the tSNR map with its grid, when written.
pub struct Maps {
    pub carpet: Option<Vec<Vec<f32>>>,
    pub tsnr: Option<(Vec<f32>, [usize; 3])>,
}

const MAX_VOXELS: usize = 1 << 28;

fn read_maps(files: &SessionFiles) -> Result<Maps, ReportError> {
    let carpet_path = files.file("carpet", "nii.gz");
    let carpet = if carpet_path.exists() {
        let figure = |message: String| ReportError::Figure {
            path: carpet_path.clone(),
            message,
        };
        let mut reader =
            RunReader::open(&carpet_path, MAX_VOXELS).map_err(|e| figure(e.to_string()))?;
        let mut columns = Vec::new();
        while let Some(column) = reader.next_volume() {
            columns.push(column.map_err(|e| figure(e.to_string()))?.0);
        }
        Some(columns)
    } else {
        None
    };
    let tsnr_path = files.file("tsnr", "nii.gz");
    let tsnr = if tsnr_path.exists() {
        let map = read_volume_file(&tsnr_path, MAX_VOXELS).map_err(|e| ReportError::Figure {
            path: tsnr_path.clone(),
            message: e.to_string(),
        })?;
        let dims = map.header.geometry().dims;
        Some((map.data, dims))
    } else {
        None
    };
    Ok(Maps { carpet, tsnr })
}

/// The report of the session whose log is `log` (`events.jsonl` or `events-N.jsonl`).
pub fn write_report_for_log(log: &Path) -> Result<PathBuf, ReportError> {
    let dir = log.parent().unwrap_or(Path::new("."));
    let name = log.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let number = name
        .strip_prefix("events-")
        .and_then(|rest| rest.strip_suffix(".jsonl"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    write_report(dir, Some(number))
}

/// Writes the session's `report.html` (numbered like its log) and returns its path.
pub fn write_report(dir: &Path, number: Option<u32>) -> Result<PathBuf, ReportError> {
    // One name for the folder however it was given, so the page says where it came from.
    let dir = &std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let files = SessionFiles::find(dir, number)?;
    let log = log::RunLog::read(&files.file("events", "jsonl"))?;
    let maps = read_maps(&files)?;
    let summary_path = dir.join("summary.json");
    let demo_summary = std::fs::read_to_string(&summary_path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    let page =
        html::page(&log, &maps, demo_summary.as_ref()).map_err(|message| ReportError::Figure {
            path: files.report_path(),
            message,
        })?;
    let path = files.report_path();
    crate::atomic::write_atomic(&path, page.as_bytes()).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
