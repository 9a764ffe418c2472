//! The demo's simulated test run kept between starts: the simulation is the same for the same
//! inputs, so a stamp file beside it records the SHA-256 of those inputs (the simulator's
//! settings, seed and run, this crate's version, and the executable's size and modification
//! time, so a rebuilt simulator simulates again) and every file written with its size. A second
//! start with the same inputs and every file intact skips the simulation; anything else
//! simulates again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sim::SimConfig;

pub const STAMP: &str = ".brainmclip-sim-cache.json";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Stamp {
    key: String,
    /// Relative to the folder, so a moved folder or another working directory still finds it.
    bold: PathBuf,
    /// Every file under the folder (relative) and its size.
    files: Vec<(PathBuf, u64)>,
}

/// The hex SHA-256 of what the simulation depends on.
pub fn key(sim: &SimConfig, seed: u64, run: usize) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_string(sim).unwrap_or_default().as_bytes());
    h.update(seed.to_le_bytes());
    h.update((run as u64).to_le_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    if let Some(meta) = std::env::current_exe().ok().and_then(|e| e.metadata().ok()) {
        h.update(meta.len().to_le_bytes());
        if let Some(t) = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        {
            h.update(t.as_nanos().to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn files_under(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                // Our own stamps and caches (the gallery's) are not the simulation.
                let ours = e.file_name().to_string_lossy().starts_with(".brainmclip-");
                if !ours {
                    out.push((rel.to_owned(), meta.len()));
                }
            }
        }
    }
    out.sort();
    out
}

/// The run's BOLD file when `root` holds the simulation for `key` with every file intact.
pub fn cached_run(root: &Path, key: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(root.join(STAMP)).ok()?;
    let stamp: Stamp = serde_json::from_str(&text).ok()?;
    (stamp.key == key && files_under(root) == stamp.files).then(|| root.join(stamp.bold))
}

/// Records the simulation now in `root` as the one for `key`.
pub fn record(root: &Path, key: &str, bold: &Path) -> std::io::Result<()> {
    let stamp = Stamp {
        key: key.to_string(),
        bold: bold.strip_prefix(root).unwrap_or(bold).to_owned(),
        files: files_under(root),
    };
    let text = serde_json::to_string(&stamp).map_err(std::io::Error::other)?;
    crate::atomic::write_atomic(&root.join(STAMP), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_holds_while_its_key_and_every_file_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/func")).unwrap();
        std::fs::write(root.join("sub/func/bold.nii.gz"), b"0123456789").unwrap();
        std::fs::write(root.join("a.png"), b"png").unwrap();
        // A cache of ours written later beside the files does not count.
        std::fs::write(root.join(".brainmclip-gallery-cache"), b"x").unwrap();
        let bold = root.join("sub/func/bold.nii.gz");
        let sim = SimConfig::default();
        let k = key(&sim, 0, 37);
        assert_eq!(cached_run(root, &k), None, "nothing recorded yet");
        record(root, &k, &bold).unwrap();
        std::fs::write(root.join(".brainmclip-gallery-cache"), b"longer").unwrap();
        assert_eq!(cached_run(root, &k), Some(bold.clone()));
        // Another seed, run or setting is another key.
        assert_ne!(key(&sim, 1, 37), k);
        assert_ne!(key(&sim, 0, 38), k);
        let other = SimConfig {
            tr: sim.tr + 0.5,
            ..sim.clone()
        };
        assert_ne!(key(&other, 0, 37), k);
        assert_eq!(cached_run(root, &key(&sim, 1, 37)), None);
        // A file cut short, or gone, invalidates it.
        std::fs::write(root.join("sub/func/bold.nii.gz"), b"01234").unwrap();
        assert_eq!(cached_run(root, &k), None);
        record(root, &k, &bold).unwrap();
        std::fs::remove_file(root.join("a.png")).unwrap();
        assert_eq!(cached_run(root, &k), None);
    }
}
