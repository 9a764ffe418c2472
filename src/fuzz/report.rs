//! What a fuzz run found, per target: accepted and rejected inputs, crashes and hangs (the first
//! few described, with where their inputs were saved), the slowest input, throughput and peak
//! memory; printed one line per target.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Crash {
    /// The input's index: `Mutator::input(seed, index)` rebuilds it.
    pub index: u64,
    /// The panic's message and where it was raised.
    pub message: String,
    /// Where the input was saved, or why it could not be.
    pub saved: Result<Option<PathBuf>, String>,
}

#[derive(Debug, Clone)]
pub struct Hang {
    pub index: u64,
    pub took: Duration,
    pub saved: Result<Option<PathBuf>, String>,
}

#[derive(Debug, Clone)]
pub struct TargetReport {
    pub target: &'static str,
    pub seed: u64,
    pub inputs: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub crashes: u64,
    pub hangs: u64,
    pub slowest: Duration,
    pub slowest_index: u64,
    pub elapsed: Duration,
    /// Peak resident memory (Linux `VmHWM`); None where it cannot be read.
    pub peak_rss_bytes: Option<u64>,
    /// Whether the peak was reset before this target (else it is the process's whole life).
    pub peak_is_this_targets: bool,
    pub crash_records: Vec<Crash>,
    pub hang_records: Vec<Hang>,
}

impl TargetReport {
    pub fn clean(&self) -> bool {
        self.crashes == 0 && self.hangs == 0
    }

    pub fn inputs_per_second(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    pub targets: Vec<TargetReport>,
}

impl FuzzReport {
    pub fn clean(&self) -> bool {
        self.targets.iter().all(TargetReport::clean)
    }
}

impl fmt::Display for TargetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peak = match self.peak_rss_bytes {
            Some(bytes) => format!(
                "{:.1}{}",
                bytes as f64 / (1024.0 * 1024.0),
                if self.peak_is_this_targets { "" } else { "*" }
            ),
            None => "n/a".into(),
        };
        write!(
            f,
            "{:<14} {:>8} {:>9} {:>9} {:>8} {:>6} {:>11.2} {:>9.0} {:>12}",
            self.target,
            self.inputs,
            self.accepted,
            self.rejected,
            self.crashes,
            self.hangs,
            self.slowest.as_secs_f64() * 1e3,
            self.inputs_per_second(),
            peak
        )
    }
}

pub(super) fn saved_text(saved: &Result<Option<PathBuf>, String>) -> String {
    match saved {
        Ok(Some(path)) => format!("saved as {}", path.display()),
        Ok(None) => "not saved (no crash folder given)".into(),
        Err(e) => format!("not saved: {e}"),
    }
}

impl fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:>8} {:>9} {:>9} {:>8} {:>6} {:>11} {:>9} {:>12}",
            "target",
            "inputs",
            "ok",
            "errors",
            "crashes",
            "hangs",
            "slowest ms",
            "inputs/s",
            "peak RSS MB"
        )?;
        for target in &self.targets {
            writeln!(f, "{target}")?;
        }
        if self.targets.iter().any(|t| !t.peak_is_this_targets) {
            writeln!(
                f,
                "* peak of the whole process (it could not be reset per target)"
            )?;
        }
        for t in &self.targets {
            for crash in &t.crash_records {
                writeln!(
                    f,
                    "crash  {} --seed {} input {}: {} ({})",
                    t.target,
                    t.seed,
                    crash.index,
                    crash.message,
                    saved_text(&crash.saved)
                )?;
            }
            for hang in &t.hang_records {
                writeln!(
                    f,
                    "hang   {} --seed {} input {}: {:.0} ms ({})",
                    t.target,
                    t.seed,
                    hang.index,
                    hang.took.as_secs_f64() * 1e3,
                    saved_text(&hang.saved)
                )?;
            }
        }
        Ok(())
    }
}
