//! Filesystem signals: inotify (or the platform's equivalent) events through `notify`, turned
//! into the three things ingest cares about, plus the directory listing used for polling.
//!
//! This file only notices; it never reads a volume. Events are sent on an unbounded channel
//! because the notify callback must never block (a full inotify queue loses events).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crossbeam_channel::Sender;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::completeness::Look;
use super::nifti_read::{companion_image, FileKind};
use crate::clock::now_ns;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The writer closed the file after writing, or renamed it into place.
    Closed(PathBuf, u64),
    /// The file was created or written to (its writer may not be done).
    Changed(PathBuf, u64),
    /// Events may have been lost: list the directory.
    Rescan(String),
}

/// Maps one notify event to signals.
pub fn signals_of(event: &Event, at_ns: u64) -> Vec<Signal> {
    if event.need_rescan() {
        return vec![Signal::Rescan("the event queue overflowed".into())];
    }
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => event
            .paths
            .iter()
            .map(|p| Signal::Closed(p.clone(), at_ns))
            .collect(),
        // A rename into the directory: with both names known, the second is the new one.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event
            .paths
            .get(1)
            .map(|p| vec![Signal::Closed(p.clone(), at_ns)])
            .unwrap_or_default(),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event
            .paths
            .iter()
            .map(|p| Signal::Closed(p.clone(), at_ns))
            .collect(),
        // Other platforms report renames without a direction: judge those by stability.
        EventKind::Create(_)
        | EventKind::Modify(
            ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Name(RenameMode::Any),
        ) => event
            .paths
            .iter()
            .map(|p| Signal::Changed(p.clone(), at_ns))
            .collect(),
        _ => Vec::new(),
    }
}

/// Starts watching `dir` (not recursively); signals go to `to`.
pub fn start_watcher(dir: &Path, to: Sender<Signal>) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<Event>| {
        let at = now_ns();
        let signals = match result {
            Ok(event) => signals_of(&event, at),
            Err(e) => vec![Signal::Rescan(format!("watcher error: {e}"))],
        };
        for s in signals {
            // The receiver is gone only when ingest has stopped.
            let _ = to.send(s);
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

fn stat(path: &Path) -> Option<Look> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    #[cfg(unix)]
    let (ctime_ns, inode) = {
        use std::os::unix::fs::MetadataExt;
        (
            meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            meta.ino(),
        )
    };
    #[cfg(not(unix))]
    let (ctime_ns, inode) = (0, 0);
    Some(Look {
        size: meta.len(),
        mtime_ns,
        ctime_ns,
        inode,
    })
}

/// Size and mtime of a dataset; for a `.hdr`, of the header and its image together (`None`
/// until both exist).
pub fn look_at(path: &Path) -> Option<Look> {
    let head = stat(path)?;
    match FileKind::of(path) {
        Some(FileKind::Pair | FileKind::PairGz) => {
            let img = stat(&companion_image(path))?;
            Some(Look {
                size: head.size + img.size,
                mtime_ns: head.mtime_ns.max(img.mtime_ns),
                ctime_ns: head.ctime_ns.max(img.ctime_ns),
                inode: head.inode ^ img.inode.rotate_left(32),
            })
        }
        _ => Some(head),
    }
}

/// The regular files in `dir`. Only a folder that cannot be opened is an error: an entry that
/// cannot be read (a file removed mid-listing, a stale network handle) is left for the next
/// listing.
pub fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange};

    #[test]
    fn event_kinds_map_to_signals() {
        let p = PathBuf::from("/e/v_0001.nii");
        let ev = |kind| Event::new(kind).add_path(p.clone());
        assert_eq!(
            signals_of(
                &ev(EventKind::Access(AccessKind::Close(AccessMode::Write))),
                7
            ),
            vec![Signal::Closed(p.clone(), 7)]
        );
        assert_eq!(
            signals_of(&ev(EventKind::Modify(ModifyKind::Name(RenameMode::To))), 7),
            vec![Signal::Closed(p.clone(), 7)]
        );
        assert_eq!(
            signals_of(&ev(EventKind::Create(CreateKind::File)), 7),
            vec![Signal::Changed(p.clone(), 7)]
        );
        assert_eq!(
            signals_of(
                &ev(EventKind::Modify(ModifyKind::Data(DataChange::Content))),
                7
            ),
            vec![Signal::Changed(p.clone(), 7)]
        );
        let both = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(PathBuf::from("/e/.v.tmp"))
            .add_path(p.clone());
        assert_eq!(signals_of(&both, 1), vec![Signal::Closed(p.clone(), 1)]);
        assert!(signals_of(
            &ev(EventKind::Access(AccessKind::Open(AccessMode::Read))),
            1
        )
        .is_empty());
        let overflow = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(matches!(signals_of(&overflow, 1)[0], Signal::Rescan(_)));
    }
}
