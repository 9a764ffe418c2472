//! Continuing a session after a crash or a kill (`run --resume DIR`). The unfinished part's
//! `.partial` logs are finished as they are (a line cut by the kill is cut off, the rest is
//! synced and renamed to the final names); the next part starts in the same folder with a link
//! to them in its `started` record. What the earlier parts recorded is read back from their
//! logs: the highest scanner index accounted for (a volume, a dummy, a missing or rejected
//! slot: the log is a prefix of the session's ordered stream) and the trials whose samples went
//! out. The new part reads every volume on disk again to rebuild the rolling statistics, but
//! sends on only what the earlier parts did not record.
//!
//! This is not a merge of parts: each part's files stay as written.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::SessionConfig;

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("{0}: no unfinished session to resume (no events*.jsonl.partial in it)")]
    NothingToResume(PathBuf),
    #[error(
        "{path}: started with another configuration (SHA-256 {found}, this one is {ours}); \
         resume it with the configuration it was started with"
    )]
    OtherConfig {
        path: PathBuf,
        found: String,
        ours: String,
    },
    #[error("{path}: {detail}")]
    Log { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ResumeError + '_ {
    move |source| ResumeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The SHA-256 of the configuration as given (before a replay adapts it), as hex.
pub fn config_fingerprint(config: &SessionConfig) -> String {
    let text = toml::to_string(config).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The link a resumed part records in its `started` record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResumedFrom {
    /// The previous part's log, under its final name.
    pub log: PathBuf,
    /// Scanner indices up to this one were accounted for by earlier parts.
    pub after_index: Option<u32>,
    /// Trials whose samples earlier parts sent.
    pub trials: usize,
}

/// What the new part must not send again.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    pub from: ResumedFrom,
    pub trials: HashSet<u64>,
}

impl ResumePoint {
    /// An index the earlier parts already accounted for.
    pub fn covers_index(&self, index: u32) -> bool {
        self.from.after_index.is_some_and(|after| index <= after)
    }
}

/// Finishes the newest unfinished session in `dir` and returns where to continue it.
pub fn prepare(dir: &Path, fingerprint: &str) -> Result<ResumePoint, ResumeError> {
    let staged = newest_unfinished(dir)?;
    let (records, final_log) = finish_log(&staged)?;
    // Killed before its first line: nothing was recorded, nothing to check.
    let found = match records.first() {
        None => fingerprint,
        Some(_) => records
            .iter()
            .find(|r| r["event"] == "started")
            .ok_or_else(|| ResumeError::Log {
                path: staged.clone(),
                detail: "no `started` record: not a session log".into(),
            })?["config_sha256"]
            .as_str()
            .unwrap_or("none"),
    };
    if found != fingerprint {
        return Err(ResumeError::OtherConfig {
            path: staged,
            found: found.into(),
            ours: fingerprint.into(),
        });
    }
    // The QA table of the same part, finished the same way.
    let qa = staged
        .to_string_lossy()
        .replace("events", "qa")
        .replace(".jsonl.partial", ".tsv.partial");
    if Path::new(&qa).exists() {
        finish_log(Path::new(&qa))?;
    }
    let (after_index, trials) = accounted(&records, dir, 0)?;
    Ok(ResumePoint {
        from: ResumedFrom {
            log: final_log,
            after_index,
            trials: trials.len(),
        },
        trials,
    })
}

/// Whether `dir` holds an unfinished session (for a hint when `--resume` was not given).
pub fn has_unfinished(dir: &Path) -> bool {
    newest_unfinished(dir).is_ok()
}

/// The highest-numbered `events*.jsonl.partial`.
fn newest_unfinished(dir: &Path) -> Result<PathBuf, ResumeError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".jsonl.partial") else {
            continue;
        };
        let number = match stem.strip_prefix("events") {
            Some("") => 1,
            Some(n) => match n.strip_prefix('-').and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => continue,
            },
            None => continue,
        };
        if best.as_ref().is_none_or(|(b, _)| number > *b) {
            best = Some((number, entry.path()));
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| ResumeError::NothingToResume(dir.to_owned()))
}

/// Cuts a line the kill left unfinished, syncs, renames to the final name; returns the
/// records of a JSON log (none for a TSV) and the final name.
fn finish_log(staged: &Path) -> Result<(Vec<serde_json::Value>, PathBuf), ResumeError> {
    let mut bytes = std::fs::read(staged).map_err(io(staged))?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        bytes.truncate(whole);
        let mut file = std::fs::File::options()
            .write(true)
            .open(staged)
            .map_err(io(staged))?;
        file.set_len(whole as u64).map_err(io(staged))?;
        file.flush().map_err(io(staged))?;
    }
    std::fs::File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(io(staged))?;
    let name = staged.to_string_lossy();
    let final_path = PathBuf::from(name.strip_suffix(".partial").unwrap_or(&name));
    std::fs::rename(staged, &final_path).map_err(io(&final_path))?;
    if let Some(parent) = final_path.parent() {
        crate::atomic::sync_folder(parent);
    }
    let records = if name.ends_with(".jsonl.partial") {
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    } else {
        Vec::new()
    };
    Ok((records, final_path))
}

/// The highest index and the trials accounted for by these records and the parts before them.
fn accounted(
    records: &[serde_json::Value],
    dir: &Path,
    depth: usize,
) -> Result<(Option<u32>, HashSet<u64>), ResumeError> {
    let index_of = |r: &serde_json::Value| r["index"].as_u64().map(|i| i as u32);
    let mut after: Option<u32> = None;
    let mut trials = HashSet::new();
    for r in records {
        match r["event"].as_str() {
            Some("volume" | "dummy" | "missing" | "rejected") => {
                after = after.max(index_of(r));
            }
            Some("sample") => trials.extend(r["trial"].as_u64()),
            _ => {}
        }
    }
    // The part this one resumed, and so on back (a loop of links is cut at 1000 parts).
    let earlier = records
        .iter()
        .find(|r| r["event"] == "started")
        .and_then(|s| s["resumes"]["log"].as_str())
        .map(PathBuf::from);
    if let (Some(log), true) = (earlier, depth < 1000) {
        let path = if log.is_absolute() {
            log
        } else {
            dir.join(log)
        };
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let records: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let (before, earlier_trials) = accounted(&records, dir, depth + 1)?;
        after = after.max(before);
        trials.extend(earlier_trials);
    }
    Ok((after, trials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_cuts_the_unfinished_line_and_counts_what_was_recorded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::write(d.join("events.jsonl"), "{\"event\":\"started\"}\n").expect("part 1");
        let log = concat!(
            "{\"event\":\"started\",\"config_sha256\":\"abc\"}\n",
            "{\"event\":\"dummy\",\"index\":1}\n",
            "{\"event\":\"volume\",\"index\":2}\n",
            "{\"event\":\"sample\",\"trial\":7}\n",
            "{\"event\":\"missing\",\"index\":3}\n",
            "{\"event\":\"volume\",\"ind"
        );
        std::fs::write(d.join("events-2.jsonl.partial"), log).expect("part 2");
        std::fs::write(d.join("qa-2.tsv.partial"), "index\n2\n3\t0.").expect("qa");
        let err = prepare(d, "other").expect_err("another configuration");
        assert!(err.to_string().contains("another configuration"), "{err}");
        // The refusal left the files finished (the kill's cut line is gone either way).
        assert!(d.join("events-2.jsonl").exists());
        std::fs::rename(d.join("events-2.jsonl"), d.join("events-2.jsonl.partial")).expect("undo");
        let point = prepare(d, "abc").expect("resume");
        assert_eq!(point.from.after_index, Some(3));
        assert_eq!(point.trials, HashSet::from([7]));
        assert_eq!(point.from.log, d.join("events-2.jsonl"));
        let finished = std::fs::read_to_string(d.join("events-2.jsonl")).expect("final");
        assert!(finished.ends_with("\"index\":3}\n"), "{finished}");
        assert_eq!(
            std::fs::read_to_string(d.join("qa-2.tsv")).expect("qa final"),
            "index\n2\n"
        );
        assert!(point.covers_index(3) && !point.covers_index(4));
        let none = tempfile::tempdir().expect("empty");
        assert!(matches!(
            prepare(none.path(), "abc"),
            Err(ResumeError::NothingToResume(_))
        ));
    }
}
