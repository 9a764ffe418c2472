//! The scanner emulator: writes a recorded run into an export directory one volume per TR, the
//! way a scanner's exporter would, with seeded faults, and a JSON manifest of exactly what it did.
//!
//! `plan` decides the faults and the schedule, `source` turns the recording into per-volume
//! files, `write` puts bytes on disk. This module runs the schedule against the clock.

mod plan;
mod source;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;

pub use plan::{make_plan, FaultKind, Op, Plan, PlanOptions, Step};
pub use source::{single_volume_nii, Source};
pub use write::{fill_in_place, preallocate, write_file, WriteMode};

use crate::clock::instant_ns;
use crate::ingest::ReadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum OutFormat {
    #[value(name = "nii")]
    #[serde(rename = "nii")]
    Nii,
    #[value(name = "nii.gz")]
    #[serde(rename = "nii.gz")]
    NiiGz,
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub source: PathBuf,
    pub to: PathBuf,
    /// Overrides the source header's TR.
    pub tr_s: Option<f64>,
    /// Playback speed factor (2 = twice as fast as the scanner).
    pub speed: f64,
    pub format: OutFormat,
    pub write: WriteMode,
    /// Output names: `{prefix}_{index:04}.nii[.gz]`.
    pub prefix: String,
    pub first_index: u32,
    /// Replay only the first N volumes.
    pub limit: Option<usize>,
    pub seed: u64,
    /// Faults at given output indices.
    pub faults_at: BTreeMap<u32, FaultKind>,
    pub rates: Vec<(FaultKind, f64)>,
    pub jitter_ms: f64,
    pub complete_late_trs: f64,
    /// Where the manifest goes (default: `replay_manifest.json` in `to`).
    pub manifest: Option<PathBuf>,
    pub max_voxels: usize,
    /// Set by the caller to end the replay early (the run was stopped).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// For a DICOM source folder: which series to play ("auto", a number, a regex).
    pub series: String,
}

impl ReplayOptions {
    pub fn new(source: impl Into<PathBuf>, to: impl Into<PathBuf>) -> ReplayOptions {
        ReplayOptions {
            source: source.into(),
            to: to.into(),
            tr_s: None,
            speed: 1.0,
            format: OutFormat::NiiGz,
            write: WriteMode::Atomic,
            prefix: "vol".into(),
            first_index: 1,
            limit: None,
            seed: 0,
            faults_at: BTreeMap::new(),
            rates: Vec::new(),
            jitter_ms: 0.0,
            complete_late_trs: 2.0,
            manifest: None,
            max_voxels: 1 << 26,
            stop: None,
            series: "auto".into(),
        }
    }

    pub fn file_name(&self, index: u32) -> String {
        let ext = match self.format {
            OutFormat::Nii => "nii",
            OutFormat::NiiGz => "nii.gz",
        };
        format!("{}_{index:04}.{ext}", self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("replay source: {0}")]
    Source(#[from] ReadError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One volume of the manifest: what the reader should end up with.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestVolume {
    pub index: u32,
    pub source_position: usize,
    pub file: String,
    pub fault: Option<FaultKind>,
    /// Whether a complete, valid file was there at the end of the replay.
    pub completed: bool,
}

/// One file operation as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestAction {
    pub index: u32,
    pub file: String,
    pub op: Op,
    pub bytes: usize,
    /// When the operation started and when the file was closed (clock ns).
    pub start_ns: u64,
    pub close_ns: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub source: PathBuf,
    pub to: PathBuf,
    pub tr_s: f64,
    pub speed: f64,
    pub format: OutFormat,
    pub write_mode: String,
    pub seed: u64,
    pub n_volumes: usize,
    pub first_index: u32,
    pub volumes: Vec<ManifestVolume>,
    pub actions: Vec<ManifestAction>,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 2), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Runs a replay to the end and returns (and writes) its manifest.
pub fn run_replay(o: &ReplayOptions) -> Result<Manifest, ReplayError> {
    if !(o.speed.is_finite() && o.speed > 0.0) {
        return Err(ReplayError::Invalid(format!(
            "--speed {} must be a positive number",
            o.speed
        )));
    }
    let series = crate::ingest::dicom::SeriesChoice::parse(&o.series)
        .map_err(|e| ReplayError::Invalid(format!("--series {:?}: {e}", o.series)))?;
    let mut source = Source::open_with_series(&o.source, o.max_voxels, &series)?;
    let tr_s = o.tr_s.or(source.tr_s()).ok_or_else(|| {
        ReplayError::Invalid(format!(
            "{}: the header gives no TR (pixdim[4]); pass --tr",
            o.source.display()
        ))
    })?;
    if !(tr_s.is_finite() && tr_s > 0.0) {
        return Err(ReplayError::Invalid(format!(
            "TR {tr_s} s must be positive"
        )));
    }
    let n = o
        .limit
        .map_or(source.n_volumes(), |l| l.min(source.n_volumes()));
    let gz_needed = o
        .faults_at
        .values()
        .chain(o.rates.iter().map(|(k, _)| k))
        .any(|k| k.needs_gzip());
    if gz_needed && o.format != OutFormat::NiiGz && !source.is_dicom() {
        return Err(ReplayError::Invalid(
            "truncated-gzip faults need --format nii.gz".into(),
        ));
    }
    let indices: Vec<u32> = (0..n).map(|p| source.index_at(p, o.first_index)).collect();
    let position_of = |index: u32| indices.iter().position(|&i| i == index);
    if let Some((&index, _)) = o.faults_at.iter().find(|(&i, _)| position_of(i).is_none()) {
        return Err(ReplayError::Invalid(format!(
            "--fault at index {index}: the replay writes indices {} to {}",
            indices.first().copied().unwrap_or(o.first_index),
            indices.last().copied().unwrap_or(o.first_index)
        )));
    }
    let names: Vec<Vec<String>> = (0..n)
        .map(|p| {
            source
                .names_at(p)
                .unwrap_or_else(|| vec![o.file_name(indices[p])])
        })
        .collect();
    std::fs::create_dir_all(&o.to).map_err(|source| ReplayError::Io {
        path: o.to.clone(),
        source,
    })?;

    let explicit = o
        .faults_at
        .iter()
        .filter_map(|(&index, &kind)| position_of(index).map(|p| (p, kind)))
        .collect();
    let plan = make_plan(&PlanOptions {
        n_volumes: n,
        tr_s,
        seed: o.seed,
        explicit,
        rates: o.rates.clone(),
        jitter_s: o.jitter_ms / 1e3,
        complete_late_trs: o.complete_late_trs,
    });

    // Encoded files are made as the schedule needs them and dropped after their last step.
    let mut remaining: HashMap<usize, usize> = HashMap::new();
    for step in &plan.steps {
        *remaining.entry(step.position).or_default() += 1;
    }
    let needed: std::collections::HashSet<usize> = remaining.keys().copied().collect();
    let mut cache: HashMap<usize, Vec<(String, Vec<u8>)>> = HashMap::new();
    let mut read_upto = 0usize;
    let mut ensure = |position: usize,
                      cache: &mut HashMap<usize, Vec<(String, Vec<u8>)>>|
     -> Result<(), ReplayError> {
        while read_upto <= position {
            let files = source.next_files().ok_or_else(|| {
                ReplayError::Invalid(format!("the source ended before volume {read_upto}"))
            })??;
            if needed.contains(&read_upto) {
                let files = files
                    .into_iter()
                    .map(|(name, bytes)| match name {
                        Some(name) => (name, bytes), // DICOM: as recorded
                        None if o.format == OutFormat::NiiGz => {
                            (o.file_name(indices[read_upto]), gzip(&bytes))
                        }
                        None => (o.file_name(indices[read_upto]), bytes),
                    })
                    .collect();
                cache.insert(read_upto, files);
            }
            read_upto += 1;
        }
        Ok(())
    };

    let start = Instant::now();
    let mut actions = Vec::with_capacity(plan.steps.len());
    let mut completed: HashMap<usize, bool> = HashMap::new();
    let stopped = || {
        o.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    };
    for (i, step) in plan.steps.iter().enumerate() {
        if stopped() {
            break;
        }
        ensure(step.position, &mut cache)?;
        if let Some(next) = plan.steps.get(i + 1) {
            ensure(next.position, &mut cache)?; // prepare ahead, outside the timed write
        }
        let due = start + Duration::from_secs_f64(step.at_s / o.speed);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let index = indices[step.position];
        let files = cache
            .get(&step.position)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let started = Instant::now();
        let mut written = 0;
        for (name, bytes) in files {
            let path = o.to.join(name);
            let io = |r: std::io::Result<()>| {
                r.map_err(|source| ReplayError::Io {
                    path: path.clone(),
                    source,
                })
            };
            written += match step.op {
                Op::Write | Op::Rewrite | Op::Complete => {
                    io(write_file(&path, bytes, o.write))?;
                    bytes.len()
                }
                Op::Preallocate => {
                    io(preallocate(&path, bytes.len() as u64))?;
                    0
                }
                Op::Fill => {
                    io(fill_in_place(&path, bytes, o.write))?;
                    bytes.len()
                }
                Op::WriteTruncated => {
                    let half = &bytes[..bytes.len() / 2];
                    io(write_file(&path, half, o.write))?;
                    half.len()
                }
            };
        }
        let complete = !matches!(step.op, Op::Preallocate | Op::WriteTruncated);
        completed.insert(step.position, complete);
        actions.push(ManifestAction {
            index,
            file: describe_files(&names[step.position]),
            op: step.op,
            bytes: written,
            start_ns: instant_ns(started),
            close_ns: crate::clock::now_ns(),
        });
        if let Some(left) = remaining.get_mut(&step.position) {
            *left -= 1;
            if *left == 0 {
                cache.remove(&step.position);
            }
        }
    }

    let volumes = (0..n)
        .map(|p| ManifestVolume {
            index: indices[p],
            source_position: p,
            file: describe_files(&names[p]),
            fault: plan.faults.get(&p).copied(),
            completed: completed.get(&p).copied().unwrap_or(false),
        })
        .collect();
    let manifest = Manifest {
        source: o.source.clone(),
        to: o.to.clone(),
        tr_s,
        speed: o.speed,
        format: o.format,
        write_mode: match o.write {
            WriteMode::Atomic => "atomic".into(),
            WriteMode::Chunked { chunk_bytes, pause } => {
                format!(
                    "chunked ({chunk_bytes} bytes, {} ms pauses)",
                    pause.as_secs_f64() * 1e3
                )
            }
        },
        seed: o.seed,
        n_volumes: n,
        first_index: indices.first().copied().unwrap_or(o.first_index),
        volumes,
        actions,
    };
    let manifest_path = o
        .manifest
        .clone()
        .unwrap_or_else(|| o.to.join("replay_manifest.json"));
    write_manifest(&manifest, &manifest_path)?;
    Ok(manifest)
}

/// A volume's file for the manifest: its name, or the first of its slice files and the count.
fn describe_files(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (+{} slice files)", rest.len()),
    }
}

fn write_manifest(manifest: &Manifest, path: &Path) -> Result<(), ReplayError> {
    let text =
        serde_json::to_string_pretty(manifest).map_err(|e| ReplayError::Invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|source| ReplayError::Io {
        path: path.to_owned(),
        source,
    })
}
