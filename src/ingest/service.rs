//! The ingest thread: watches the export directory, decides when each file is complete, decodes
//! it, checks its geometry, puts volumes in order and sends typed events downstream.
//!
//! One thread owns all ingest state (no locks); the notify callback only forwards signals. The
//! output channel is bounded: when the next stage is busy this thread waits, so no volume is
//! ever dropped before preprocessing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use tracing::{debug, info, warn};

mod dicom_input;
mod reach;

use super::completeness::{Due, Failure, Tracker, TrackerSettings};
use super::events::{EndReason, IngestEvent};
use super::naming::{IndexPattern, NameClass};
use super::nifti_read::read_volume_file;
use super::sequencer::{Sequencer, SequencerSettings};
use super::volume::{Geometry, Volume};
use super::watch::{list_dir, look_at, start_watcher, Signal};
use super::ReadError;
use crate::clock::now_ns;
use crate::config::{ExistingFiles, SessionConfig, WatchMode};

const MS: u64 = 1_000_000;
/// A header TR above this is taken as corrupt.
const MAX_HEADER_TR_S: f64 = 60.0;
/// The TR assumed for deadlines when neither the session nor the header gives one.
const FALLBACK_TR_S: f64 = 2.0;
/// Decoded files are looked at again on one poll in this many.
const DONE_FILES_EVERY_POLLS: u64 = 16;
/// The longest the thread sleeps without checking its stop flag.
const MAX_SLEEP_NS: u64 = 50 * MS;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("ingest.dir {dir}: {source} (expected the scanner's export directory)")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ingest.reference: {0}")]
    Reference(#[from] ReadError),
    #[error("ingest.pattern: {0}")]
    Pattern(#[from] regex::Error),
    #[error("ingest.series: {0}")]
    Series(String),
    #[error("ingest.dir {dir}: cannot watch for events: {source} (use watch = \"poll\")")]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// A running ingest thread. Dropping it stops the thread.
pub struct Ingest {
    events: Receiver<IngestEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ingest {
    /// Starts watching `config.ingest.dir`.
    pub fn start(config: &SessionConfig) -> Result<Ingest, StartError> {
        let ic = &config.ingest;
        // One spelling of every path: notify reports absolute paths, listings use ours.
        let dir = std::fs::canonicalize(&ic.dir)
            .and_then(|dir| std::fs::read_dir(&dir).map(|_| dir))
            .map_err(|source| StartError::Dir {
                dir: ic.dir.clone(),
                source,
            })?;
        let pattern = IndexPattern::new(&ic.pattern)?;
        let reference = match &ic.reference {
            Some(path) => {
                let decoded = read_volume_file(path, ic.max_voxels)?;
                Some((path.clone(), decoded.header.geometry()))
            }
            None => None,
        };
        let (signal_tx, signal_rx) = unbounded();
        // Held by the worker so the channel never disconnects (a disconnected channel would
        // turn the worker's timed wait into a busy loop in polling mode).
        let keepalive = signal_tx.clone();
        let mut watch = ic.watch;
        let mut watch_warning = None;
        let watcher = match watch {
            WatchMode::Events => {
                Some(
                    start_watcher(&dir, signal_tx).map_err(|source| StartError::Watch {
                        dir: dir.clone(),
                        source,
                    })?,
                )
            }
            // Auto polls anyway: without events it only gets slower, not blind.
            WatchMode::Auto => match start_watcher(&dir, signal_tx) {
                Ok(watcher) => Some(watcher),
                Err(e) => {
                    watch = WatchMode::Poll;
                    watch_warning = Some(format!(
                        "{}: cannot watch for events ({e}); polling only",
                        dir.display()
                    ));
                    None
                }
            },
            WatchMode::Poll => None,
        };
        let (out_tx, out_rx) = bounded(ic.channel_capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let speed = if config.session.clock_speed > 0.0 {
            config.session.clock_speed
        } else {
            1.0
        };
        let tr_ns = (config.session.tr > 0.0).then_some((config.session.tr / speed * 1e9) as u64);
        let mut worker = Worker {
            dir,
            pattern,
            watch,
            poll_ns: ic.poll_interval_ms * MS,
            existing: ic.existing,
            max_voxels: ic.max_voxels,
            tolerance_mm: ic.affine_tolerance_mm,
            tracker: Tracker::new(TrackerSettings {
                stability_ns: ic.stability_ms * MS,
                max_retries: ic.max_retries,
                backoff_ns: ic.retry_backoff_ms * MS,
            }),
            sequencer: Sequencer::new(SequencerSettings {
                first_index: config.session.first_index,
                total: (config.session.volumes > 0).then_some(config.session.volumes),
                tr_ns,
                deadline_tr: ic.deadline_tr,
                quiet_trs: ic.quiet_trs,
            }),
            reference,
            signals: signal_rx,
            out: out_tx,
            stop: stop.clone(),
            warned: HashSet::new(),
            next_poll_ns: 0,
            _keepalive: keepalive,
            clock_speed: speed,
            dicom: dicom_input::DicomInput::new(ic)?,
            outage: None,
            polls: 0,
        };
        if let Some(message) = watch_warning {
            worker.warn(message);
        }
        let thread = std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                // The watcher lives exactly as long as the thread that consumes its signals.
                let _watcher = watcher;
                worker.run();
            })
            .map_err(|source| StartError::Dir {
                dir: ic.dir.clone(),
                source,
            })?;
        Ok(Ingest {
            events: out_rx,
            stop,
            thread: Some(thread),
        })
    }

    pub fn events(&self) -> &Receiver<IngestEvent> {
        &self.events
    }

    /// A flag that stops the run when set (for signal handlers on other threads).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Asks the thread to end the run (`RunEnded { reason: Stopped }` follows).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop();
        // Unblock a send in progress, then wait for the thread.
        while self.events.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                while self.events.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = t.join();
        }
    }
}

struct Worker {
    dir: PathBuf,
    pattern: IndexPattern,
    watch: WatchMode,
    poll_ns: u64,
    existing: ExistingFiles,
    max_voxels: usize,
    tolerance_mm: f64,
    tracker: Tracker,
    sequencer: Sequencer,
    reference: Option<(PathBuf, Geometry)>,
    signals: Receiver<Signal>,
    out: Sender<IngestEvent>,
    stop: Arc<AtomicBool>,
    /// Names already warned about (no index), so each is reported once.
    warned: HashSet<PathBuf>,
    next_poll_ns: u64,
    _keepalive: Sender<Signal>,
    clock_speed: f64,
    dicom: dicom_input::DicomInput,
    /// Set while the export folder cannot be listed.
    outage: Option<reach::Outage>,
    /// Listings so far.
    polls: u64,
}

impl Worker {
    fn run(mut self) {
        self.initial_listing();
        loop {
            let now = now_ns();
            if self.stop.load(Ordering::SeqCst) {
                self.finish_dicom(now);
                self.sequencer.finish(EndReason::Stopped, now);
                self.flush();
                return;
            }
            let polling = self.watch != WatchMode::Events;
            // Out of reach, only the next listing matters.
            let judging = self.reachable();
            let wake = [
                self.tracker.next_due_ns().filter(|_| judging),
                self.sequencer.next_wakeup_ns().filter(|_| judging),
                polling.then_some(self.next_poll_ns),
                self.dicom_deadline_ns().filter(|_| judging),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX);
            let sleep = wake.saturating_sub(now).min(MAX_SLEEP_NS);
            match self.signals.recv_timeout(Duration::from_nanos(sleep)) {
                Ok(signal) => {
                    self.on_signal(signal);
                    while let Ok(signal) = self.signals.try_recv() {
                        self.on_signal(signal);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            let now = now_ns();
            if polling && now >= self.next_poll_ns {
                self.poll(now);
                self.next_poll_ns = now + self.poll_ns;
            }
            if self.reachable() {
                self.do_due_work();
                self.report_coarse_times();
                self.tick_dicom(now_ns());
                self.sequencer.tick(now_ns());
            }
            if !self.flush() || self.sequencer.is_ended() {
                return;
            }
        }
    }

    /// Sends what the sequencer produced; false when nobody listens any more.
    fn flush(&mut self) -> bool {
        for event in self.sequencer.take_events() {
            log_event(&event);
            if self.out.send(event).is_err() {
                return false;
            }
        }
        true
    }

    /// The dataset a path belongs to, with its index; warns once about unindexed NIfTI names.
    /// Paths are re-rooted on the canonical directory so that event and listing paths agree.
    fn dataset_of(&mut self, path: &Path) -> Option<(PathBuf, u32)> {
        let path = &self.dir.join(path.file_name()?);
        let dataset = match self.pattern.classify(path) {
            NameClass::Volume(index) => return Some((path.to_owned(), index)),
            NameClass::PairImage(header) => header,
            NameClass::NoIndex => {
                if self.warned.insert(path.to_owned()) {
                    let message = format!(
                        "{}: NIfTI file name gives no index with ingest.pattern; ignored",
                        path.display()
                    );
                    warn!("{message}");
                    let _ = self.out.send(IngestEvent::Warning {
                        message,
                        at_ns: now_ns(),
                    });
                }
                return None;
            }
            NameClass::Dicom => return Some((path.to_owned(), dicom_input::INDEX_UNKNOWN)),
            NameClass::Ignored => return None,
        };
        match self.pattern.classify(&dataset) {
            NameClass::Volume(index) => Some((dataset, index)),
            _ => None,
        }
    }

    fn initial_listing(&mut self) {
        let now = now_ns();
        let files = match list_dir(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                self.warn(format!("{}: cannot list: {e}", self.dir.display()));
                return;
            }
        };
        let mut newest_skipped = None;
        for path in files {
            let Some((dataset, index)) = self.dataset_of(&path) else {
                continue;
            };
            let look = look_at(&dataset);
            match self.existing {
                ExistingFiles::Process => self.tracker.observe_look(&dataset, index, look, now),
                ExistingFiles::Skip => {
                    self.tracker.skip(&dataset, index, look, now);
                    let index = if index == dicom_input::INDEX_UNKNOWN {
                        self.dicom.index_from_header(&dataset)
                    } else {
                        Some(index)
                    };
                    newest_skipped = newest_skipped.max(index);
                }
            }
        }
        if let Some(index) = newest_skipped {
            info!("skipped files already present, up to index {index}");
            self.sequencer.start_at(index + 1);
        }
        self.next_poll_ns = now + self.poll_ns;
    }

    fn poll(&mut self, now: u64) {
        let files = match list_dir(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                self.lost_reach(now, &e);
                return;
            }
        };
        self.regained_reach(now);
        // Decoded files are looked at on one poll in `DONE_FILES_EVERY_POLLS`, a different
        // share each poll, so a folder of a day's volumes costs little and evenly per poll.
        self.polls += 1;
        let (turn, every) = (self.polls, DONE_FILES_EVERY_POLLS);
        for path in files {
            if self.tracker.is_resting(&path, turn, every) {
                continue;
            }
            if let Some((dataset, index)) = self.dataset_of(&path) {
                if self.tracker.is_resting(&dataset, turn, every) {
                    continue;
                }
                let look = look_at(&dataset);
                self.tracker.observe_look(&dataset, index, look, now);
            }
        }
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::Closed(path, at) => {
                if let Some((dataset, index)) = self.dataset_of(&path) {
                    let look = look_at(&dataset);
                    if look.is_some() {
                        self.tracker.observe_closed(&dataset, index, look, at);
                    } else {
                        // The other half of a pair is not there yet.
                        self.tracker.observe_look(&dataset, index, look, at);
                    }
                }
            }
            Signal::Changed(path, at) => {
                if let Some((dataset, index)) = self.dataset_of(&path) {
                    let look = look_at(&dataset);
                    self.tracker.observe_look(&dataset, index, look, at);
                }
            }
            Signal::Rescan(why) => {
                self.warn(format!("{}: rescanning: {why}", self.dir.display()));
                self.poll(now_ns());
            }
        }
    }

    fn warn(&mut self, message: String) {
        warn!("{message}");
        let _ = self.out.send(IngestEvent::Warning {
            message,
            at_ns: now_ns(),
        });
    }

    fn do_due_work(&mut self) {
        loop {
            for path in self.tracker.take_abandoned() {
                let index = self.tracker.index_of(&path);
                let reason = format!(
                    "{}: vanished, or its .img never appeared, while waiting for it to be complete",
                    path.display()
                );
                self.sequencer.offer_rejected(index, path, reason, now_ns());
            }
            let due = self.tracker.due(now_ns());
            if due.is_empty() {
                return;
            }
            for item in due {
                match item {
                    Due::Relook(path) => {
                        if let Some(index) = self.tracker.index_of(&path) {
                            self.tracker
                                .observe_look(&path, index, look_at(&path), now_ns());
                        }
                    }
                    Due::Read(path) => self.read(&path),
                }
            }
        }
    }

    fn read(&mut self, path: &Path) {
        let Some(index) = self.tracker.index_of(path) else {
            return;
        };
        let seen_ns = self.tracker.first_seen_ns(path).unwrap_or_else(now_ns);
        if index == dicom_input::INDEX_UNKNOWN && self.pattern.classify(path) == NameClass::Dicom {
            self.read_dicom(path, seen_ns);
            return;
        }
        let before = look_at(path);
        let result = read_volume_file(path, self.max_voxels).and_then(|decoded| {
            // A file that changed while we read it may have given us a mix of two versions.
            if look_at(path) == before {
                Ok(decoded)
            } else {
                Err(ReadError::Incomplete {
                    path: path.to_owned(),
                    detail: "it changed while being read".into(),
                })
            }
        });
        match result {
            Ok(decoded) => {
                let read_ns = now_ns();
                self.tracker.read_succeeded(path, before);
                let volume = Volume {
                    index,
                    path: path.to_owned(),
                    geometry: decoded.header.geometry(),
                    data: decoded.data,
                    non_finite: decoded.non_finite,
                    seen_ns,
                    read_ns,
                    slice_times_s: None,
                };
                self.deliver(volume);
            }
            Err(error) => {
                if !self.waits_for_permission(path, &error) {
                    self.read_failed(path, Some(index), error);
                }
            }
        }
    }

    /// Checks a decoded volume against the run's grid, learns the TR, and hands it on.
    fn deliver(&mut self, volume: Volume) {
        let (index, path, read_ns) = (volume.index, volume.path.clone(), volume.read_ns);
        let geometry = &volume.geometry;
        let (ref_path, ref_geometry) = self
            .reference
            .get_or_insert_with(|| (path.to_owned(), geometry.clone()));
        if let Some(diff) = ref_geometry.mismatch(geometry, self.tolerance_mm) {
            let partial = ref_geometry.dims[..2] == geometry.dims[..2]
                && ref_geometry.dims[2] > geometry.dims[2];
            let reason = if partial {
                format!(
                    "{} slices where {} has {}: a partial volume (an interrupted scan writes \
                     one); expected every volume complete",
                    geometry.dims[2],
                    ref_path.display(),
                    ref_geometry.dims[2]
                )
            } else {
                format!(
                    "geometry differs from {}: {diff}; expected every volume on one grid",
                    ref_path.display()
                )
            };
            self.sequencer
                .offer_rejected(Some(index), path.to_owned(), reason, read_ns);
            return;
        }
        self.learn_tr(geometry.tr_s, &path);
        if volume.non_finite > 0 {
            warn!(
                "{}: {} NaN/Inf voxels (kept, counted)",
                path.display(),
                volume.non_finite
            );
        }
        self.sequencer.offer_volume(volume, read_ns);
    }

    /// Takes the TR for deadlines from a header when the session gives none.
    fn learn_tr(&mut self, header_tr_s: Option<f64>, path: &Path) {
        if self.sequencer.tr_ns().is_some() {
            return;
        }
        let tr = match header_tr_s {
            Some(tr) if tr > 0.0 && tr <= MAX_HEADER_TR_S => tr,
            other => {
                self.warn(format!(
                    "{}: session.tr is 0 and the header's TR ({other:?} s) is not usable; \
                     assuming {FALLBACK_TR_S} s for deadlines. Set session.tr.",
                    path.display()
                ));
                FALLBACK_TR_S
            }
        };
        self.sequencer
            .set_tr_ns((tr / self.clock_speed * 1e9) as u64);
    }

    /// A failed read: retried while it may still be cured by waiting, then rejected.
    fn read_failed(&mut self, path: &Path, index: Option<u32>, error: ReadError) {
        let now = now_ns();
        match self
            .tracker
            .read_failed(path, look_at(path), error.is_retryable(), now)
        {
            Failure::RetryAt(at) => {
                debug!("{error}; retry in {} ms", (at - now) / MS);
            }
            Failure::GiveUp { attempts } => {
                let reason = if error.is_retryable() {
                    format!("{error} (still after {attempts} attempts)")
                } else {
                    error.to_string()
                };
                self.sequencer
                    .offer_rejected(index, path.to_owned(), reason, now);
            }
        }
    }
}

/// One debug line per event; what users see is printed by the consumer, in stream order.
fn log_event(event: &IngestEvent) {
    match event {
        IngestEvent::Volume(v) | IngestEvent::Late(v) => debug!(
            index = v.index,
            latency_ms = (v.read_ns.saturating_sub(v.seen_ns)) as f64 / 1e6,
            "{} {}",
            event.kind(),
            v.path.display()
        ),
        other => debug!("{:?}", other.to_log_record()),
    }
}
