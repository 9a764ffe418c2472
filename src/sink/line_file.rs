//! An append-only file of whole lines that outlives a failing disk: the recorder's `events.jsonl`
//! and `qa.tsv`. Each line is written with one call as it comes. When a write fails (disk full,
//! permission taken away, a removed output folder) the line and the ones after it wait in memory,
//! in order, and are written at the next line once the disk takes them; a line cut short by a
//! failing write is cut off the file first, so the file only ever holds whole lines. A failure
//! is reported once, when it starts, and once more when writing resumes. The file is written as
//! `<name>.partial` and synced and renamed to its final name at `close`.
//!
//! Also here: `WriteFaults`, a switch that makes these writes (and the recorder's images) fail
//! on demand, for drills and tests of exactly this.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use super::SinkError;

/// What waits in memory at most while a file cannot be written; lines beyond it are counted as
/// lost (a day of volumes' records is far below it).
const WAITING_CAP_BYTES: usize = 256 << 20;

/// A fault to inject into the recorder's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Writes succeed.
    None,
    /// ENOSPC, after half of the bytes were written (as a filling disk does).
    DiskFull,
    /// EACCES before anything is written.
    Denied,
}

/// A shared switch: the recorder's writes fail while it is set. Cloning shares the switch.
#[derive(Debug, Clone, Default)]
pub struct WriteFaults(Arc<AtomicU8>);

impl WriteFaults {
    pub fn set(&self, fault: WriteFault) {
        let code = match fault {
            WriteFault::None => 0,
            WriteFault::DiskFull => 1,
            WriteFault::Denied => 2,
        };
        self.0.store(code, Ordering::SeqCst);
    }

    pub fn current(&self) -> WriteFault {
        match self.0.load(Ordering::SeqCst) {
            1 => WriteFault::DiskFull,
            2 => WriteFault::Denied,
            _ => WriteFault::None,
        }
    }

    /// Writes `bytes` to `out`, or fails as the switch says.
    pub fn write_all(&self, out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
        match self.current() {
            WriteFault::None => out.write_all(bytes),
            WriteFault::DiskFull => {
                out.write_all(&bytes[..bytes.len() / 2])?;
                Err(std::io::Error::from_raw_os_error(libc_enospc()))
            }
            WriteFault::Denied => Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        }
    }

    /// Fails as the switch says, before a whole-file write.
    pub fn check(&self) -> std::io::Result<()> {
        self.write_all(&mut std::io::sink(), &[])
    }
}

/// ENOSPC's number (28 on Linux and macOS, 112 on Windows).
fn libc_enospc() -> i32 {
    if cfg!(windows) {
        112
    } else {
        28
    }
}

pub struct LineFile {
    /// The final name.
    path: PathBuf,
    /// Where it is written until `close`.
    staged: PathBuf,
    file: Option<File>,
    /// Bytes of whole lines in the staged file.
    written: u64,
    /// A failed write may have left part of a line after `written`.
    ragged: bool,
    waiting: VecDeque<String>,
    waiting_bytes: usize,
    /// Lines dropped because too much was waiting.
    lost: u64,
    /// The failure being reported, while writes fail.
    failing: Option<String>,
    faults: WriteFaults,
}

impl LineFile {
    /// Creates `<path>.partial`; an error here is a start-up error (the folder is not writable).
    pub fn create(path: PathBuf, faults: WriteFaults) -> Result<LineFile, SinkError> {
        let staged = super::recorder::partial(&path);
        let file = open_for_append(&staged, true).map_err(|e| SinkError::io(&staged, e))?;
        Ok(LineFile {
            path,
            staged,
            file: Some(file),
            written: 0,
            ragged: false,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            lost: 0,
            failing: None,
            faults,
        })
    }

    /// Lines written so far.
    pub fn written_bytes(&self) -> u64 {
        self.written
    }

    /// Lines waiting in memory for the disk.
    pub fn waiting_lines(&self) -> usize {
        self.waiting.len()
    }

    /// One whole line (without its newline). An error is a report (the file started failing,
    /// resumed, or was recreated), never a lost line, except past the waiting cap (counted).
    pub fn line(&mut self, text: &str) -> Result<(), SinkError> {
        let mut line = String::with_capacity(text.len() + 1);
        line.push_str(text);
        line.push('\n');
        if self.waiting_bytes + line.len() > WAITING_CAP_BYTES {
            self.lost += 1;
        } else {
            self.waiting_bytes += line.len();
            self.waiting.push_back(line);
        }
        self.drain()
    }

    /// Writes what waits; reports a change of state.
    fn drain(&mut self) -> Result<(), SinkError> {
        let waited = self.waiting.len();
        match self.write_waiting() {
            Ok(recreated) => {
                let was_failing = self.failing.take();
                let mut notes = Vec::new();
                if recreated {
                    notes.push(format!(
                        "{}: the file (or its folder) was removed; recreated it from the {} \
                         bytes written before",
                        self.staged.display(),
                        self.written
                    ));
                }
                if was_failing.is_some() {
                    notes.push(format!(
                        "{}: writing again; the {} lines that waited are written",
                        self.staged.display(),
                        waited.saturating_sub(1)
                    ));
                }
                if self.lost > 0 && was_failing.is_some() {
                    notes.push(format!(
                        "{}: {} lines were lost: more than {} MiB waited",
                        self.staged.display(),
                        self.lost,
                        WAITING_CAP_BYTES >> 20
                    ));
                }
                match notes.is_empty() {
                    true => Ok(()),
                    false => Err(SinkError::Other(notes.join("; "))),
                }
            }
            Err(e) => {
                if self.failing.is_some() {
                    return Ok(());
                }
                let message = format!(
                    "{}: cannot write after its first {} bytes: {e}; its lines wait in memory \
                     and are written when the disk takes them",
                    self.staged.display(),
                    self.written
                );
                self.failing = Some(message.clone());
                Err(SinkError::Other(message))
            }
        }
    }

    /// Writes every waiting line; true when the file had to be recreated first.
    fn write_waiting(&mut self) -> std::io::Result<bool> {
        let recreated = self.reattach()?;
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("the file is not open"));
        };
        if self.ragged {
            file.set_len(self.written)?;
            self.ragged = false;
        }
        while let Some(line) = self.waiting.front() {
            if let Err(e) = self.faults.write_all(file, line.as_bytes()) {
                self.ragged = true;
                return Err(e);
            }
            self.written += line.len() as u64;
            self.waiting_bytes -= line.len();
            self.waiting.pop_front();
        }
        Ok(recreated)
    }

    /// When the staged file is gone (its folder removed or unmounted and mounted again), makes
    /// it again with the bytes already written, read back from the open handle.
    fn reattach(&mut self) -> std::io::Result<bool> {
        match std::fs::symlink_metadata(&self.staged) {
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = self.staged.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut fresh = open_for_append(&self.staged, true)?;
        if let Some(old) = self.file.as_mut() {
            old.seek(SeekFrom::Start(0))?;
            let copied = std::io::copy(&mut old.take(self.written), &mut fresh)?;
            if copied < self.written {
                return Err(std::io::Error::other(format!(
                    "only {copied} of the {} bytes written before could be read back",
                    self.written
                )));
            }
        }
        self.file = Some(fresh);
        self.ragged = false;
        Ok(true)
    }

    /// Writes what still waits, syncs, renames to the final name and syncs the folder. What
    /// cannot be written keeps the file under its `.partial` name, and the error says so.
    pub fn close(mut self) -> Result<PathBuf, SinkError> {
        if let Err(e) = self.write_waiting() {
            return Err(SinkError::Other(format!(
                "{}: {} lines could not be written at the end ({e}); the file keeps its \
                 .partial name",
                self.staged.display(),
                self.waiting.len()
            )));
        }
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|e| SinkError::io(&self.staged, e))?;
        }
        std::fs::rename(&self.staged, &self.path).map_err(|e| SinkError::io(&self.path, e))?;
        if let Some(parent) = self.path.parent() {
            crate::atomic::sync_folder(parent);
        }
        Ok(self.path)
    }
}

fn open_for_append(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_full_disk_loses_no_line_and_leaves_no_half_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let faults = WriteFaults::default();
        let mut file =
            LineFile::create(dir.path().join("events.jsonl"), faults.clone()).expect("create");
        file.line("one").expect("first line");
        faults.set(WriteFault::DiskFull);
        let report = file
            .line("two, cut in half")
            .expect_err("the failure is reported");
        assert!(report.to_string().contains("cannot write"), "{report}");
        assert!(
            report.to_string().contains("events.jsonl.partial"),
            "{report}"
        );
        // Reported once: later failures are quiet.
        file.line("three")
            .expect("second failing line is not reported again");
        assert_eq!(file.waiting_lines(), 2);
        faults.set(WriteFault::None);
        let resumed = file.line("four").expect_err("the recovery is reported");
        assert!(
            resumed.to_string().contains("writing again; the 2 lines"),
            "{resumed}"
        );
        file.line("five").expect("healthy again");
        let path = file.close().expect("close");
        assert_eq!(
            lines_of(&path),
            ["one", "two, cut in half", "three", "four", "five"]
        );
    }

    #[test]
    fn a_removed_folder_is_made_again_with_everything_written_before() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("out");
        let mut file =
            LineFile::create(out.join("qa.tsv"), WriteFaults::default()).expect("create");
        file.line("header").expect("line");
        file.line("row 1").expect("line");
        std::fs::remove_dir_all(&out).expect("remove the output folder");
        let note = file.line("row 2").expect_err("the removal is reported");
        assert!(note.to_string().contains("was removed"), "{note}");
        file.line("row 3").expect("healthy again");
        let path = file.close().expect("close");
        assert_eq!(lines_of(&path), ["header", "row 1", "row 2", "row 3"]);
    }

    #[test]
    fn denied_writes_wait_and_the_end_says_what_was_not_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let faults = WriteFaults::default();
        let mut file =
            LineFile::create(dir.path().join("events.jsonl"), faults.clone()).expect("create");
        faults.set(WriteFault::Denied);
        file.line("a").expect_err("reported");
        file.line("b").expect("quiet");
        let err = file.close().expect_err("cannot finish");
        assert!(
            err.to_string().contains("2 lines could not be written"),
            "{err}"
        );
        assert!(dir.path().join("events.jsonl.partial").exists());
        assert!(!dir.path().join("events.jsonl").exists());
    }
}
