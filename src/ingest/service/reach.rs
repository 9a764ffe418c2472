//! What the ingest thread does when the export folder itself is out of reach (an SMB or NFS
//! share unmounted, a permission taken away) and when it comes back, and when one file is
//! unreadable for lack of permission. Each is reported once, with the path and the OS error;
//! the thread keeps waiting and resumes delivery by itself, without a restart.
//!
//! While the folder is out of reach nothing is judged: no file counts as vanished, no deadline
//! passes and the quiet-time end does not come; on return every deadline moves by the outage's
//! length (`Sequencer::hold_for`), so volumes written meanwhile arrive as in-order volumes.

use std::path::Path;

use super::{Worker, MS};
use crate::ingest::ReadError;

/// Since when the folder cannot be listed, and why.
pub(super) struct Outage {
    since_ns: u64,
}

impl Worker {
    pub(super) fn reachable(&self) -> bool {
        self.outage.is_none()
    }

    /// A listing failed: reported when the outage starts, quiet after.
    pub(super) fn lost_reach(&mut self, now: u64, error: &std::io::Error) {
        if self.outage.is_some() {
            return;
        }
        self.outage = Some(Outage { since_ns: now });
        self.warn(format!(
            "{}: cannot list: {error}; the export folder is out of reach (an unmounted share?). \
             Waiting for it to come back: nothing counts as missing meanwhile",
            self.dir.display()
        ));
    }

    /// A listing succeeded: ends an outage, moving every deadline by its length.
    pub(super) fn regained_reach(&mut self, now: u64) {
        let Some(outage) = self.outage.take() else {
            return;
        };
        let lasted = now.saturating_sub(outage.since_ns);
        // What the scanner wrote meanwhile appears all at once and must still be judged
        // complete: a stability window and two listings more.
        let judging = self.tracker.stability_ns() + 2 * self.poll_ns;
        self.sequencer.hold_for(lasted + judging);
        self.warn(format!(
            "{}: reachable again after {:.1} s; resuming",
            self.dir.display(),
            lasted as f64 / (1000 * MS) as f64
        ));
    }

    /// Reports (once) a file that was first seen with whole-second times.
    pub(super) fn report_coarse_times(&mut self) {
        if let Some((path, resolution_ns)) = self.tracker.take_coarse_noticed() {
            self.warn(format!(
                "{}: file times on this folder have whole-second resolution (a network \
                 share?): a file counts as complete once unchanged for {} s",
                path.display(),
                resolution_ns / (1000 * MS)
            ));
        }
    }

    /// A file the OS will not let us read: reported once, then left until it changes (a
    /// `chmod` or a rewrite changes its look and it is read again).
    pub(super) fn waits_for_permission(&mut self, path: &Path, error: &ReadError) -> bool {
        let denied = matches!(error, ReadError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied);
        if !denied {
            return false;
        }
        let look = crate::ingest::watch::look_at(path);
        // Settled as unreadable at this look: a different look reopens it.
        self.tracker.read_failed(path, look, false, super::now_ns());
        if self.warned.insert(path.to_owned()) {
            self.warn(format!(
                "{error}; waiting until it becomes readable (its volume counts as missing if \
                 its deadline passes first)"
            ));
        }
        true
    }
}
