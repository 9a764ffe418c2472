//! Runs a target's inputs one after another on the calling thread, each under `catch_unwind`,
//! and reports what happened: accepted and rejected inputs, crashes (panic message and place,
//! the input saved as `<dir>/<target>/<hash>.bin` with a `.txt` beside it), inputs slower than
//! `hang_limit`, the slowest input, throughput and peak resident memory.
//!
//! A watchdog thread catches the hang a timer after each input cannot: an input still running
//! after `abort_after` is rebuilt from its index, saved, named on stderr, and the process
//! aborted (a hung parser cannot be interrupted from outside).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use sha2::{Digest, Sha256};

use super::report::{saved_text, Crash, FuzzReport, Hang, TargetReport};
use super::{Mutator, Outcome, Target};

#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// An input slower than this is reported as a hang (the run goes on).
    pub hang_limit: Duration,
    /// An input still running after this aborts the process, after saving it; None: no watchdog.
    pub abort_after: Option<Duration>,
    /// Where crashing and hanging inputs are saved (`<dir>/<target>/<hash>.bin`); None: not saved.
    pub crash_dir: Option<PathBuf>,
    /// Crashes and hangs described in the report (all are counted; the saved files dedupe).
    pub max_records: usize,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        FuzzOptions {
            hang_limit: Duration::from_secs(2),
            abort_after: Some(Duration::from_secs(10)),
            crash_dir: None,
            max_records: 20,
        }
    }
}

thread_local! {
    /// Set while this thread runs fuzz inputs: its panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static QUIET_HOOK: Once = Once::new();

/// Installs, once per process, a panic hook that is silent on threads running fuzz inputs and
/// hands every other panic to the hook that was there before. It stays installed: setting and
/// restoring a process-wide hook around each run would race with runs (and tests) on other
/// threads, and outside a run it behaves exactly as the previous hook.
fn install_quiet_hook() {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|quiet| quiet.get()) {
                let place = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = format!("{}{place}", payload_text(info.payload()));
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a text message".into()
    }
}

/// This thread's panics are quiet while it lives.
struct QuietPanics;

impl QuietPanics {
    fn on() -> QuietPanics {
        install_quiet_hook();
        QUIET.with(|quiet| quiet.set(true));
        QuietPanics
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET.with(|quiet| quiet.set(false));
    }
}

/// Runs one input through `target`: its outcome, or the panic's message and place. For
/// regression tests of saved crash inputs.
pub fn run_input(target: &Target, input: &[u8]) -> Result<Outcome, String> {
    let _quiet = QuietPanics::on();
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|payload| {
        LAST_PANIC
            .with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| payload_text(&*payload))
    })
}

/// Peak resident memory of this process (`VmHWM` in `/proc/self/status`); None off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Resets `VmHWM` to the current resident size (Linux 4.0+), so the next reading is one
/// target's peak; false where that is not possible.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Saves `input` as `<dir>/<target>/<hash>.bin` (the first 16 hex digits of its SHA-256, so a
/// crash found twice is one file) and `why` beside it as `<hash>.txt`.
fn save_input(
    dir: Option<&Path>,
    target: &str,
    input: &[u8],
    why: &str,
) -> Result<Option<PathBuf>, String> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    let folder = dir.join(target);
    let hash: String = Sha256::digest(input)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = folder.join(format!("{hash}.bin"));
    std::fs::create_dir_all(&folder)
        .and_then(|()| std::fs::write(&path, input))
        .and_then(|()| std::fs::write(path.with_extension("txt"), format!("{why}\n")))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path))
}

/// The input in progress, for the watchdog.
struct Progress {
    index: AtomicU64,
    /// Nanoseconds from the run's start to the input's start; `IDLE` between inputs.
    started_ns: AtomicU64,
}

const IDLE: u64 = u64::MAX;

struct Watchdog {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    fn spawn(
        target: &Target,
        seed: u64,
        progress: Arc<Progress>,
        run_start: Instant,
        abort_after: Duration,
        crash_dir: Option<PathBuf>,
    ) -> Watchdog {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let (name, mutator): (&'static str, Arc<Mutator>) = (target.name, target.mutator.clone());
        let thread = std::thread::spawn(move || loop {
            match stopped.recv_timeout(Duration::from_millis(200)) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let started = progress.started_ns.load(Ordering::Acquire);
            let index = progress.index.load(Ordering::Acquire);
            let now = run_start.elapsed().as_nanos() as u64;
            // Read twice: a different start means the input finished in between.
            if started == IDLE
                || progress.started_ns.load(Ordering::Acquire) != started
                || now.saturating_sub(started) < abort_after.as_nanos() as u64
            {
                continue;
            }
            let input = mutator.input(seed, index);
            let why = format!(
                "hang: still running after {} s (--seed {seed} input {index})",
                abort_after.as_secs()
            );
            let saved = save_input(crash_dir.as_deref(), name, &input, &why);
            eprintln!(
                "fuzz target {name}: input {index} (--seed {seed}) is still running after {:.0} s; \
                 aborting ({})",
                abort_after.as_secs_f64(),
                saved_text(&saved)
            );
            std::process::abort();
        });
        Watchdog { stop, thread }
    }

    fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Runs inputs `0..inputs` of `target` (from `seed`) and reports them.
pub fn run_target(target: &Target, inputs: u64, seed: u64, options: &FuzzOptions) -> TargetReport {
    let peak_is_this_targets = reset_peak_rss();
    let run_start = Instant::now();
    let progress = Arc::new(Progress {
        index: AtomicU64::new(0),
        started_ns: AtomicU64::new(IDLE),
    });
    let watchdog = options.abort_after.map(|limit| {
        Watchdog::spawn(
            target,
            seed,
            progress.clone(),
            run_start,
            limit,
            options.crash_dir.clone(),
        )
    });
    let mut report = TargetReport {
        target: target.name,
        seed,
        inputs: 0,
        accepted: 0,
        rejected: 0,
        crashes: 0,
        hangs: 0,
        slowest: Duration::ZERO,
        slowest_index: 0,
        elapsed: Duration::ZERO,
        peak_rss_bytes: None,
        peak_is_this_targets,
        crash_records: Vec::new(),
        hang_records: Vec::new(),
    };
    let quiet = QuietPanics::on();
    let crash_dir = options.crash_dir.as_deref();
    for index in 0..inputs {
        let input = target.mutator.input(seed, index);
        progress.index.store(index, Ordering::Release);
        progress
            .started_ns
            .store(run_start.elapsed().as_nanos() as u64, Ordering::Release);
        let began = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        let took = began.elapsed();
        progress.started_ns.store(IDLE, Ordering::Release);
        report.inputs += 1;
        if took > report.slowest {
            report.slowest = took;
            report.slowest_index = index;
        }
        match result {
            Ok(Outcome::Accepted) => report.accepted += 1,
            Ok(Outcome::Rejected) => report.rejected += 1,
            Err(payload) => {
                report.crashes += 1;
                let message = LAST_PANIC
                    .with(|last| last.borrow_mut().take())
                    .unwrap_or_else(|| payload_text(&*payload));
                let why = format!("crash: {message} (--seed {seed} input {index})");
                let saved = save_input(crash_dir, target.name, &input, &why);
                if report.crash_records.len() < options.max_records {
                    report.crash_records.push(Crash {
                        index,
                        message,
                        saved,
                    });
                }
            }
        }
        if took > options.hang_limit {
            report.hangs += 1;
            let why = format!(
                "hang: {:.0} ms (--seed {seed} input {index})",
                took.as_secs_f64() * 1e3
            );
            let saved = save_input(crash_dir, target.name, &input, &why);
            if report.hang_records.len() < options.max_records {
                report.hang_records.push(Hang { index, took, saved });
            }
        }
    }
    drop(quiet);
    if let Some(watchdog) = watchdog {
        watchdog.finish();
    }
    report.elapsed = run_start.elapsed();
    report.peak_rss_bytes = peak_rss_bytes();
    report
}

/// Runs every target in turn with the same inputs count and seed.
pub fn run(targets: &[Target], inputs: u64, seed: u64, options: &FuzzOptions) -> FuzzReport {
    FuzzReport {
        targets: targets
            .iter()
            .map(|target| run_target(target, inputs, seed, options))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Grammar;
    use super::*;

    fn no_anchors(_: &[u8]) -> Vec<usize> {
        Vec::new()
    }

    /// Panics on a zero first byte, sleeps on 0xff, else accepts an even length.
    fn touchy(input: &[u8]) -> Outcome {
        match input.first() {
            Some(0) => panic!("zero first byte"),
            Some(0xff) => {
                std::thread::sleep(Duration::from_millis(3));
                Outcome::Rejected
            }
            _ if input.len().is_multiple_of(2) => Outcome::Accepted,
            _ => Outcome::Rejected,
        }
    }

    fn touchy_target() -> Target {
        let grammar = Grammar::Binary {
            anchors: no_anchors,
            tokens: &[b"\x00", b"\xff"],
        };
        Target {
            name: "touchy",
            about: "a target with known faults",
            mutator: Arc::new(Mutator::new(vec![vec![1, 2, 3, 4]], grammar)),
            run: touchy,
        }
    }

    #[test]
    fn panics_and_slow_inputs_are_caught_counted_and_saved() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let options = FuzzOptions {
            hang_limit: Duration::from_millis(1),
            crash_dir: Some(dir.path().to_owned()),
            ..FuzzOptions::default()
        };
        let target = touchy_target();
        let report = run_target(&target, 3000, 5, &options);
        assert_eq!(
            report.accepted + report.rejected + report.crashes,
            report.inputs
        );
        assert!(report.crashes > 0 && report.hangs > 0, "{report}");
        assert!(!report.clean());
        let crash = &report.crash_records[0];
        assert!(
            crash.message.contains("zero first byte"),
            "{}",
            crash.message
        );
        assert!(crash.message.contains("runner.rs"), "{}", crash.message);
        let saved = crash.saved.clone().ok().flatten().expect("a saved input");
        let bytes = std::fs::read(&saved).expect("the saved input");
        assert_eq!(bytes, target.mutator.input(5, crash.index));
        assert!(run_input(&target, &bytes).is_err());
        assert!(saved.with_extension("txt").exists());
        let text = FuzzReport {
            targets: vec![report],
        }
        .to_string();
        assert!(
            text.contains("touchy") && text.contains("crash  touchy"),
            "{text}"
        );
    }

    #[test]
    fn the_peak_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 0));
        }
    }
}
