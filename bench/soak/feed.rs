//! The soak's parts around the session: the scanner (a thread renaming the cycled volumes into
//! the export folder on an absolute schedule), the stimulus computer (two feedback clients, each
//! on its own thread, counting what it receives), and the collector (a session sink keeping each
//! volume's telemetry and figures and sampling the process's RSS every 500 volumes).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brainmclip::clock::now_ns;
use brainmclip::event::SessionEvent;
use brainmclip::ingest::replay::{write_file, WriteMode};
use brainmclip::ingest::IngestEvent;
use brainmclip::sink::{Sink, SinkError};

use super::{Schedule, SoakError};

/// Feedback clients, as the issue asks: more than one, so a slow or lost client shows.
pub const SUBSCRIBERS: usize = 2;
/// Volumes between RSS samples.
pub const RSS_EVERY: u32 = 500;
/// The collector's name among the session's sinks.
pub const COLLECTOR: &str = "soak-collector";
/// Messages kept of each kind (errors, warnings); the rest are only counted.
const KEPT_MESSAGES: usize = 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a subscriber waits for the server to answer its first line.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// A subscriber that hears nothing for this long gives up (records come every TR).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Not a marker, so no trial is made of it; the server answers it with an error line, which
/// shows the connection is served (subscribed before any record goes out).
const PING: &[u8] = b"{\"type\":\"ping\"}\n";

/// The process's resident memory after `volumes` volumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RssSample {
    pub volumes: u32,
    pub kib: u64,
}

/// The resident set size from `/proc/self/status` (Linux), in KiB.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One volume as the session's stream gave it.
#[derive(Debug, Clone)]
pub struct VolumeSeen {
    pub position: usize,
    pub seen_ns: u64,
    pub preprocessed_ns: u64,
    pub global_signal: f32,
    pub motion: Option<[f32; 6]>,
    pub dims: [usize; 3],
    pub non_finite: usize,
    /// Whether it was read from the file written for its index.
    pub named_right: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct SampleSeen {
    pub trial: u64,
    /// The position of the trial's last volume.
    pub last_position: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
pub struct DecodedSeen {
    pub trial: u64,
    pub decoded_ns: u64,
}

/// Everything the collector kept.
#[derive(Debug, Default)]
pub struct Collected {
    pub volumes: Vec<VolumeSeen>,
    /// Positions of the dummy scans (left out by preprocessing, still delivered).
    pub dummies: Vec<usize>,
    /// Indices outside the soak's range.
    pub outside: Vec<u32>,
    /// Ingest records other than in-order volumes and warnings: (kind, index).
    pub gaps: Vec<(&'static str, Option<u32>)>,
    pub warnings: Vec<String>,
    pub warnings_total: usize,
    pub samples: Vec<SampleSeen>,
    pub decoded: Vec<DecodedSeen>,
    pub generated: usize,
    pub errors: Vec<String>,
    pub errors_total: usize,
    /// Processed files that could not be removed (with `keep_files` off).
    pub not_removed: usize,
    pub rss: Vec<RssSample>,
}

fn keep_message(kept: &mut Vec<String>, total: &mut usize, message: String) {
    *total += 1;
    if kept.len() < KEPT_MESSAGES {
        kept.push(message);
    }
}

/// Samples the RSS into `collected` (and says so on stderr when `progress`).
pub fn sample_rss(collected: &Mutex<Collected>, volumes: u32, progress: bool) {
    let Some(kib) = rss_kib() else { return };
    collected
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .rss
        .push(RssSample { volumes, kib });
    if progress {
        eprintln!(
            "soak: {volumes} volumes, RSS {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
}

/// The session sink that keeps what the report needs.
pub struct Collector {
    shared: Arc<Mutex<Collected>>,
    schedule: Schedule,
    keep_files: bool,
    progress: bool,
}

impl Collector {
    pub fn new(
        shared: Arc<Mutex<Collected>>,
        schedule: Schedule,
        keep_files: bool,
        progress: bool,
    ) -> Collector {
        shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .volumes
            .reserve(schedule.volumes as usize);
        Collector {
            shared,
            schedule,
            keep_files,
            progress,
        }
    }

    fn volume(&self, v: &brainmclip::preprocess::stage::VolumeReport) {
        let Some(position) = self.schedule.position_of(v.index) else {
            self.lock().outside.push(v.index);
            return;
        };
        let expected_name = Schedule::file_name(v.index);
        let named_right =
            v.path.file_name().and_then(|n| n.to_str()) == Some(expected_name.as_str());
        self.lock().volumes.push(VolumeSeen {
            position,
            seen_ns: v.seen_ns,
            preprocessed_ns: v.preprocessed_ns,
            global_signal: v.global_signal,
            motion: v.motion,
            dims: v.dims,
            non_finite: v.non_finite,
            named_right,
        });
        if !self.keep_files && std::fs::remove_file(&v.path).is_err() {
            self.lock().not_removed += 1;
        }
        let done = position as u32 + 1;
        if done.is_multiple_of(RSS_EVERY) {
            sample_rss(&self.shared, done, self.progress);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The scanner index an ingest record names, if any.
fn index_of(e: &IngestEvent) -> Option<u32> {
    match e {
        IngestEvent::Volume(v) | IngestEvent::Late(v) => Some(v.index),
        IngestEvent::Missing { index, .. } | IngestEvent::Duplicate { index, .. } => Some(*index),
        IngestEvent::Rejected { index, .. } => *index,
        // Warnings and the run's end name no volume.
        _ => None,
    }
}

impl Sink for Collector {
    fn name(&self) -> &str {
        COLLECTOR
    }

    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        match event {
            SessionEvent::Volume(v) => self.volume(v),
            SessionEvent::Dummy { index } => match self.schedule.position_of(*index) {
                Some(position) => self.lock().dummies.push(position),
                None => self.lock().outside.push(*index),
            },
            SessionEvent::Gap(IngestEvent::Warning { message, .. }) => {
                let mut c = self.lock();
                let c = &mut *c;
                keep_message(&mut c.warnings, &mut c.warnings_total, message.clone());
            }
            SessionEvent::Gap(e) => self.lock().gaps.push((e.kind(), index_of(e))),
            SessionEvent::Sample(s) => {
                let last_position = s.volumes.last().and_then(|&i| self.schedule.position_of(i));
                self.lock().samples.push(SampleSeen {
                    trial: s.trial,
                    last_position,
                });
            }
            SessionEvent::Decoded(d) => self.lock().decoded.push(DecodedSeen {
                trial: d.trial,
                decoded_ns: d.decoded_ns,
            }),
            SessionEvent::Generated(_) => self.lock().generated += 1,
            SessionEvent::Error { stage, message, .. } => {
                let mut c = self.lock();
                let c = &mut *c;
                keep_message(
                    &mut c.errors,
                    &mut c.errors_total,
                    format!("{stage}: {message}"),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// What the writer did.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// When each position's file was in place (clock ns; 0 = never written).
    pub at_ns: Vec<u64>,
    pub count: usize,
    /// The most a write started after its due time, ms.
    pub max_late_ms: f64,
    /// Writes that started more than half a TR after their due time.
    pub late_writes: usize,
}

/// Starts the scanner: position k's file is renamed into `dir` at k TRs after the start; an
/// I/O error ends the session through `stop_session`.
pub fn start_writer(
    schedule: Schedule,
    dir: PathBuf,
    files: Vec<Vec<u8>>,
    cancel: Arc<AtomicBool>,
    stop_session: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<Written, SoakError>>, SoakError> {
    std::thread::Builder::new()
        .name("soak-scanner".into())
        .spawn(move || {
            let result = write_volumes(&schedule, &dir, &files, &cancel);
            if result.is_err() {
                stop_session.store(true, Ordering::SeqCst);
            }
            result
        })
        .map_err(|e| SoakError::Run(format!("cannot start the writer thread: {e}")))
}

fn write_volumes(
    schedule: &Schedule,
    dir: &Path,
    files: &[Vec<u8>],
    cancel: &AtomicBool,
) -> Result<Written, SoakError> {
    let tr = Duration::from_secs_f64(schedule.tr_ms / 1e3);
    let n = schedule.volumes as usize;
    let mut written = Written {
        at_ns: vec![0; n],
        ..Written::default()
    };
    let start = Instant::now();
    for position in 0..n {
        if cancel.load(Ordering::SeqCst) {
            break;
        }
        // An absolute schedule: a late write does not push the later ones back.
        let due = start + tr.mul_f64(position as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let late = Instant::now().saturating_duration_since(due);
        written.max_late_ms = written.max_late_ms.max(late.as_secs_f64() * 1e3);
        if late > tr / 2 {
            written.late_writes += 1;
        }
        let index = schedule.first_index + position as u32;
        let path = dir.join(Schedule::file_name(index));
        let bytes = files
            .get(schedule.source_position(position))
            .ok_or_else(|| SoakError::Run(format!("no source volume for position {position}")))?;
        write_file(&path, bytes, WriteMode::Atomic)
            .map_err(|source| SoakError::Io { path, source })?;
        written.at_ns[position] = now_ns();
        written.count += 1;
    }
    Ok(written)
}

/// What one feedback client received.
#[derive(Debug, Default)]
pub struct Tally {
    pub records: u64,
    /// Volume records per position.
    pub volume_records: Vec<u16>,
    /// Trials whose sample record arrived.
    pub samples: HashSet<u64>,
    /// "too slow: N records dropped" lines: the server dropped records for this client.
    pub lag_notices: u64,
    pub unreadable_lines: u64,
    /// Whether the run's last record (`run_ended`) arrived.
    pub ended: bool,
    /// Why it stopped early or what the server objected to.
    pub problem: Option<String>,
}

/// The feedback clients, listening.
pub struct Subscribers {
    threads: Vec<JoinHandle<Tally>>,
}

impl Subscribers {
    /// Waits for every client to reach the end of the run (or give up).
    pub fn finish(self) -> Vec<Tally> {
        self.threads
            .into_iter()
            .map(|t| {
                t.join().unwrap_or_else(|_| Tally {
                    problem: Some("its thread panicked".into()),
                    ..Tally::default()
                })
            })
            .collect()
    }
}

/// Connects `count` clients to the feedback server and returns once the server serves each of
/// them, so none misses a record.
pub fn subscribe(
    address: SocketAddr,
    schedule: Schedule,
    count: usize,
) -> Result<Subscribers, SoakError> {
    let (ready_tx, ready) = mpsc::channel();
    let mut threads = Vec::with_capacity(count);
    for k in 1..=count {
        let stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(|e| {
            SoakError::Run(format!(
                "feedback server {address}: subscriber {k} cannot connect: {e}"
            ))
        })?;
        let ready_tx = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("soak-subscriber-{k}"))
            .spawn(move || listen(stream, schedule, ready_tx))
            .map_err(|e| SoakError::Run(format!("cannot start subscriber {k}: {e}")))?;
        threads.push(thread);
    }
    for _ in 0..count {
        match ready.recv_timeout(SUBSCRIBE_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                return Err(SoakError::Run(format!(
                    "feedback server {address}: a subscriber was not served: {why}"
                )))
            }
            Err(_) => {
                return Err(SoakError::Run(format!(
                    "feedback server {address}: a subscriber was not served within {} s",
                    SUBSCRIBE_TIMEOUT.as_secs()
                )))
            }
        }
    }
    Ok(Subscribers { threads })
}

/// One client: asks once (to learn it is served), then counts records until the run's end.
fn listen(stream: TcpStream, schedule: Schedule, ready: mpsc::Sender<Result<(), String>>) -> Tally {
    let mut tally = Tally {
        volume_records: vec![0; schedule.volumes as usize],
        ..Tally::default()
    };
    let mut ready = Some(ready);
    let asked = stream
        .set_read_timeout(Some(IDLE_TIMEOUT))
        .and_then(|()| stream.try_clone())
        .and_then(|mut writer| writer.write_all(PING));
    if let Err(e) = asked {
        let why = format!("cannot write to the server: {e}");
        if let Some(r) = ready.take() {
            let _ = r.send(Err(why.clone()));
        }
        tally.problem = Some(why);
        return tally;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            // The server closed the connection (the session has ended).
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tally.problem = Some(format!("reading: {e}"));
                break;
            }
        }
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            tally.unreadable_lines += 1;
            continue;
        };
        tally.records += 1;
        if record["type"] == "error" {
            let message = record["message"].as_str().unwrap_or_default();
            if message.contains("not a marker line") {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            } else if message.starts_with("too slow") {
                tally.lag_notices += 1;
            } else if tally.problem.is_none() {
                tally.problem = Some(message.to_string());
            }
            continue;
        }
        match record["event"].as_str() {
            Some("volume") => {
                let position = record["index"]
                    .as_u64()
                    .and_then(|i| u32::try_from(i).ok())
                    .and_then(|i| schedule.position_of(i));
                if let Some(count) = position.and_then(|p| tally.volume_records.get_mut(p)) {
                    *count = count.saturating_add(1);
                }
            }
            Some("sample") => {
                if let Some(trial) = record["trial"].as_u64() {
                    tally.samples.insert(trial);
                }
            }
            Some("run_ended") => {
                tally.ended = true;
                break;
            }
            _ => {}
        }
    }
    if let Some(r) = ready.take() {
        let why = tally
            .problem
            .clone()
            .unwrap_or_else(|| "the connection closed before the server answered".into());
        let _ = r.send(Err(why));
    }
    tally
}
