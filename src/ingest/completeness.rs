//! When a file may be read: the per-file state machine that combines every completeness signal.
//!
//! A file is read when a close-write or rename event says its writer is done, or when two looks
//! at its size and mtime, at least `stability` apart, agree (network mounts give no events).
//! File times with whole-second resolution (SMB, NFS on some servers, FAT: 1 or 2 s) cannot
//! show a write in the same second as a look, so such a file must stay unchanged for the
//! resolution (not just `stability`) before it counts as complete; this is noticed per file
//! from its mtime and reported once.
//! A failed read is retried with doubling backoff up to `max_retries`, then the file is
//! rejected; any later change to it (a new size or mtime, a new close event) starts it afresh.
//! A file is settled only after a successful decode, never before.
//!
//! Pure logic with injected time and file looks (the service does the `stat`s and reads), so
//! each rule is unit-tested without a filesystem.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What a `stat` says of a file (for a `.hdr/.img` pair, of both together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub size: u64,
    pub mtime_ns: i128,
    /// Status-change time and inode (0 where the platform has none): they change on a
    /// rewrite or a rename even when a coarse mtime does not.
    pub ctime_ns: i128,
    pub inode: u64,
}

#[derive(Debug, Clone)]
pub struct TrackerSettings {
    pub stability_ns: u64,
    pub max_retries: u32,
    pub backoff_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not yet decoded.
    Pending,
    /// Decoded (or skipped at start-up) at this look.
    Settled,
    /// Given up at this look.
    Rejected,
}

#[derive(Debug)]
struct Tracked {
    index: u32,
    first_seen_ns: u64,
    status: Status,
    /// The latest look and since when it has been unchanged.
    look: Option<(Look, u64)>,
    /// The look when the file was settled or rejected; a different one reopens it.
    settled_look: Option<Look>,
    attempts: u32,
    attempt_look: Option<Look>,
    read_due_ns: Option<u64>,
    relook_due_ns: Option<u64>,
    absent_looks: u32,
    /// The order the file was first seen in (spreads re-looks at decoded files over polls).
    serial: u64,
}

/// What the service should do with a file now.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// `stat` it again and report with `observe_look`.
    Relook(PathBuf),
    /// Try to decode it, then report with `read_succeeded` / `read_failed`.
    Read(PathBuf),
}

/// The outcome of a failed read.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Will be retried at this time.
    RetryAt(u64),
    /// Retries are used up (or the error cannot be cured by waiting): reject the file.
    GiveUp { attempts: u32 },
}

/// Looks at a file that has vanished (or a `.hdr` whose `.img` never came) before giving up.
const ABSENT_LOOKS: u32 = 100;

pub struct Tracker {
    settings: TrackerSettings,
    /// Boxed: a table of a day's files doubles in place, and a ~300-byte slot per file made
    /// each doubling megabytes.
    files: HashMap<PathBuf, Box<Tracked>>,
    /// The files still `Pending`: the only ones `due` and `next_due_ns` look at, so a day's
    /// thousands of settled files cost nothing per wake-up.
    pending: HashSet<PathBuf>,
    abandoned: Vec<PathBuf>,
    /// A whole-second mtime at an odd second was seen: the resolution is 1 s, not 2 s.
    odd_coarse_second: bool,
    /// The first file with coarse times and the resolution assumed, until taken.
    coarse_noticed: Option<(PathBuf, u64)>,
    coarse_reported: bool,
}

const SECOND_NS: i128 = 1_000_000_000;

impl Tracker {
    pub fn new(settings: TrackerSettings) -> Tracker {
        Tracker {
            settings,
            files: HashMap::new(),
            pending: HashSet::new(),
            abandoned: Vec::new(),
            odd_coarse_second: false,
            coarse_noticed: None,
            coarse_reported: false,
        }
    }

    /// How long `look` must stay unchanged: `stability`, or the file times' resolution when
    /// they are whole seconds (2 s until an odd second shows it is 1 s).
    fn stability_for(&mut self, path: &Path, look: &Look) -> u64 {
        let whole_second = look.mtime_ns % SECOND_NS == 0 && look.mtime_ns != 0;
        if !whole_second {
            return self.settings.stability_ns;
        }
        if (look.mtime_ns / SECOND_NS) % 2 != 0 {
            self.odd_coarse_second = true;
        }
        let resolution = if self.odd_coarse_second { 1 } else { 2 } * SECOND_NS as u64;
        if !self.coarse_reported {
            self.coarse_reported = true;
            self.coarse_noticed = Some((path.to_owned(), resolution));
        }
        self.settings.stability_ns.max(resolution)
    }

    pub fn stability_ns(&self) -> u64 {
        self.settings.stability_ns
    }

    /// The first file seen with whole-second times and the resolution assumed (once).
    pub fn take_coarse_noticed(&mut self) -> Option<(PathBuf, u64)> {
        self.coarse_noticed.take()
    }

    fn entry(&mut self, path: &Path, index: u32, now_ns: u64) -> &mut Tracked {
        let serial = self.files.len() as u64;
        if !self.files.contains_key(path) {
            self.pending.insert(path.to_owned());
        }
        self.files.entry(path.to_owned()).or_insert_with(|| {
            Box::new(Tracked {
                index,
                first_seen_ns: now_ns,
                status: Status::Pending,
                look: None,
                settled_look: None,
                attempts: 0,
                attempt_look: None,
                read_due_ns: None,
                relook_due_ns: None,
                absent_looks: 0,
                serial,
            })
        })
    }

    /// Reopens a settled or rejected file whose look changed (a rewrite or a late completion).
    fn reopen_if_changed(t: &mut Tracked, look: Option<Look>, now_ns: u64) -> bool {
        if t.status == Status::Pending {
            return true;
        }
        if look.is_none() || look == t.settled_look {
            return false;
        }
        t.status = Status::Pending;
        t.first_seen_ns = now_ns;
        t.attempts = 0;
        t.look = None;
        t.read_due_ns = None;
        true
    }

    /// Keeps `pending` in step with a file's status after a change.
    fn sync(&mut self, path: &Path) {
        match self.files.get(path).map(|t| t.status) {
            Some(Status::Pending) => {
                self.pending.insert(path.to_owned());
            }
            _ => {
                self.pending.remove(path);
            }
        }
    }

    /// A file decoded, skipped or given up on (and not changed since) that need not be looked
    /// at on this poll: each is looked at on one poll in `every`, a different share of them on
    /// each (`turn` counts polls), so a rewrite still gets a fresh chance.
    pub fn is_resting(&self, path: &Path, turn: u64, every: u64) -> bool {
        self.files
            .get(path)
            .is_some_and(|t| t.status != Status::Pending && t.serial % every != turn % every)
    }

    /// A close-write or rename-to event: the writer says the file is done.
    pub fn observe_closed(&mut self, path: &Path, index: u32, look: Option<Look>, now_ns: u64) {
        self.closed(path, index, look, now_ns);
        self.sync(path);
    }

    fn closed(&mut self, path: &Path, index: u32, look: Option<Look>, now_ns: u64) {
        let t = self.entry(path, index, now_ns);
        if !Self::reopen_if_changed(t, look, now_ns) {
            return;
        }
        if look.is_some() && look != t.attempt_look {
            t.attempts = 0;
        }
        t.look = look.map(|l| (l, now_ns));
        if t.attempts == 0 {
            t.read_due_ns = Some(now_ns);
        }
    }

    /// A poll listing, a modify event or a scheduled re-look: judge stability.
    pub fn observe_look(&mut self, path: &Path, index: u32, look: Option<Look>, now_ns: u64) {
        self.looked(path, index, look, now_ns);
        self.sync(path);
    }

    fn looked(&mut self, path: &Path, index: u32, look: Option<Look>, now_ns: u64) {
        let stability = match &look {
            Some(l) => self.stability_for(path, l),
            None => self.settings.stability_ns,
        };
        let t = self.entry(path, index, now_ns);
        if !Self::reopen_if_changed(t, look, now_ns) {
            return;
        }
        t.relook_due_ns = None;
        let Some(look) = look else {
            // Gone, or half of a pair not there yet: look again later, for a while.
            t.look = None;
            t.absent_looks += 1;
            if t.absent_looks > ABSENT_LOOKS {
                t.status = Status::Rejected;
                t.settled_look = None;
                t.read_due_ns = None;
                self.abandoned.push(path.to_owned());
            } else {
                t.relook_due_ns = Some(now_ns + stability);
            }
            return;
        };
        t.absent_looks = 0;
        match t.look {
            Some((prev, since)) if prev == look => {
                if now_ns >= since + stability {
                    if t.read_due_ns.is_none() && (t.attempts == 0 || t.attempt_look != Some(look))
                    {
                        t.attempts = 0;
                        t.read_due_ns = Some(now_ns);
                    }
                } else {
                    t.relook_due_ns = Some(since + stability);
                }
            }
            _ => {
                // Still changing: a scheduled read or retry waits for the file to settle again.
                if t.look.is_some() {
                    t.read_due_ns = None;
                    t.attempts = 0;
                }
                t.look = Some((look, now_ns));
                t.relook_due_ns = Some(now_ns + stability);
            }
        }
    }

    /// Files given up on because they stayed absent (vanished, or a pair's image never came).
    pub fn take_abandoned(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.abandoned)
    }

    /// Marks a file present at start-up as already handled.
    pub fn skip(&mut self, path: &Path, index: u32, look: Option<Look>, now_ns: u64) {
        let t = self.entry(path, index, now_ns);
        t.status = Status::Settled;
        t.settled_look = look;
        self.sync(path);
    }

    /// Everything due at `now_ns`, reads in index order.
    pub fn due(&mut self, now_ns: u64) -> Vec<Due> {
        let mut relooks = Vec::new();
        let mut reads = Vec::new();
        for path in &self.pending {
            let Some(t) = self.files.get_mut(path) else {
                continue;
            };
            if t.read_due_ns.is_some_and(|d| d <= now_ns) {
                t.read_due_ns = None;
                reads.push((t.index, path.clone()));
            } else if t.relook_due_ns.is_some_and(|d| d <= now_ns) {
                t.relook_due_ns = None;
                relooks.push((t.index, path.clone()));
            }
        }
        reads.sort();
        relooks.sort();
        relooks
            .into_iter()
            .map(|(_, p)| Due::Relook(p))
            .chain(reads.into_iter().map(|(_, p)| Due::Read(p)))
            .collect()
    }

    pub fn next_due_ns(&self) -> Option<u64> {
        self.pending
            .iter()
            .filter_map(|p| self.files.get(p))
            .flat_map(|t| [t.read_due_ns, t.relook_due_ns])
            .flatten()
            .min()
    }

    /// When the file was first noticed (for the volume's `seen_ns`).
    pub fn first_seen_ns(&self, path: &Path) -> Option<u64> {
        self.files.get(path).map(|t| t.first_seen_ns)
    }

    pub fn index_of(&self, path: &Path) -> Option<u32> {
        self.files.get(path).map(|t| t.index)
    }

    #[cfg(test)]
    pub fn status(&self, path: &Path) -> Option<Status> {
        self.files.get(path).map(|t| t.status)
    }

    /// The file decoded; `look` is a `stat` taken after the read.
    pub fn read_succeeded(&mut self, path: &Path, look: Option<Look>) {
        if let Some(t) = self.files.get_mut(path) {
            t.status = Status::Settled;
            t.settled_look = look;
            t.read_due_ns = None;
            t.relook_due_ns = None;
        }
        self.sync(path);
    }

    /// The read failed; `retryable` says whether waiting could help.
    pub fn read_failed(
        &mut self,
        path: &Path,
        look: Option<Look>,
        retryable: bool,
        now_ns: u64,
    ) -> Failure {
        let failure = self.failed(path, look, retryable, now_ns);
        self.sync(path);
        failure
    }

    fn failed(&mut self, path: &Path, look: Option<Look>, retryable: bool, now_ns: u64) -> Failure {
        let (max, backoff) = (self.settings.max_retries, self.settings.backoff_ns);
        let Some(t) = self.files.get_mut(path) else {
            return Failure::GiveUp { attempts: 0 };
        };
        t.attempts += 1;
        t.attempt_look = look;
        if !retryable || t.attempts > max {
            t.status = Status::Rejected;
            t.settled_look = look;
            t.read_due_ns = None;
            t.relook_due_ns = None;
            return Failure::GiveUp {
                attempts: t.attempts,
            };
        }
        let wait = backoff.saturating_mul(1u64 << (t.attempts - 1).min(20));
        t.read_due_ns = Some(now_ns + wait);
        Failure::RetryAt(now_ns + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn tracker() -> Tracker {
        Tracker::new(TrackerSettings {
            stability_ns: 50 * MS,
            max_retries: 3,
            backoff_ns: 20 * MS,
        })
    }

    fn look(size: u64, mtime: i128) -> Option<Look> {
        Some(Look {
            size,
            mtime_ns: mtime,
            ctime_ns: 0,
            inode: 1,
        })
    }

    fn reads(t: &mut Tracker, now: u64) -> Vec<PathBuf> {
        t.due(now)
            .into_iter()
            .filter_map(|d| if let Due::Read(p) = d { Some(p) } else { None })
            .collect()
    }

    #[test]
    fn polling_needs_two_equal_looks_at_least_the_stability_window_apart() {
        let mut t = tracker();
        let p = Path::new("v_0001.nii");
        t.observe_look(p, 1, look(100, 1), 0);
        assert_eq!(t.next_due_ns(), Some(50 * MS));
        // Grows in between: the window restarts.
        t.observe_look(p, 1, look(200, 2), 40 * MS);
        t.observe_look(p, 1, look(200, 2), 60 * MS);
        assert!(reads(&mut t, 60 * MS).is_empty());
        assert_eq!(t.next_due_ns(), Some(90 * MS));
        assert_eq!(t.due(90 * MS), vec![Due::Relook(p.into())]);
        t.observe_look(p, 1, look(200, 2), 90 * MS);
        assert_eq!(reads(&mut t, 90 * MS), vec![PathBuf::from(p)]);
        assert_eq!(t.first_seen_ns(p), Some(0));
    }

    #[test]
    fn whole_second_file_times_must_stay_unchanged_for_their_resolution() {
        let mut t = tracker();
        let s = SECOND_NS;
        // A pre-allocated file (final size at once) on a share with 2 s times: the writer
        // goes on filling it within the same 2 s, which neither the size nor the mtime shows.
        let p = Path::new("v_0001.nii");
        t.observe_look(p, 1, look(1000, 100 * s), 0);
        let noticed = t.take_coarse_noticed().expect("noticed");
        assert_eq!(noticed, (PathBuf::from(p), 2_000 * MS));
        assert_eq!(t.take_coarse_noticed(), None, "reported once");
        // 50 ms later (the stability window) it is not yet read.
        t.observe_look(p, 1, look(1000, 100 * s), 50 * MS);
        assert!(reads(&mut t, 50 * MS).is_empty());
        assert_eq!(t.next_due_ns(), Some(2_000 * MS));
        t.observe_look(p, 1, look(1000, 100 * s), 2_000 * MS);
        assert_eq!(reads(&mut t, 2_000 * MS), vec![PathBuf::from(p)]);
        // A write that crossed into the next tick shows as a new mtime: the window restarts.
        let q = Path::new("v_0002.nii");
        t.observe_look(q, 2, look(1000, 102 * s), 2_100 * MS);
        t.observe_look(q, 2, look(1000, 104 * s), 3_000 * MS);
        t.observe_look(q, 2, look(1000, 104 * s), 4_100 * MS);
        assert!(reads(&mut t, 4_100 * MS).is_empty());
        // An odd second shows the resolution is 1 s: later files wait 1 s.
        let r = Path::new("v_0003.nii");
        t.observe_look(r, 3, look(1000, 105 * s), 5_000 * MS);
        t.observe_look(r, 3, look(1000, 105 * s), 6_000 * MS);
        assert_eq!(reads(&mut t, 6_000 * MS), vec![PathBuf::from(r)]);
        // Fine-grained times keep the 50 ms window.
        let f = Path::new("v_0004.nii");
        t.observe_look(f, 4, look(1000, 105 * s + 1), 7_000 * MS);
        t.observe_look(f, 4, look(1000, 105 * s + 1), 7_050 * MS);
        assert_eq!(reads(&mut t, 7_050 * MS), vec![PathBuf::from(f)]);
    }

    #[test]
    fn a_decoded_file_rests_on_all_polls_but_one_in_every() {
        let mut t = tracker();
        let p = Path::new("v_0001.nii");
        t.observe_closed(p, 1, look(10, 1), 0);
        assert!(
            !t.is_resting(p, 0, 16),
            "pending files are always looked at"
        );
        assert_eq!(reads(&mut t, 0), vec![PathBuf::from(p)]);
        t.read_succeeded(p, look(10, 1));
        let looked_at: Vec<u64> = (0..32).filter(|&turn| !t.is_resting(p, turn, 16)).collect();
        assert_eq!(looked_at, [0, 16], "first seen, so serial 0");
    }

    #[test]
    fn close_event_reads_at_once_and_failures_back_off_then_give_up() {
        let mut t = tracker();
        let p = Path::new("v_0002.nii.gz");
        t.observe_closed(p, 2, look(10, 1), 5);
        assert_eq!(reads(&mut t, 5), vec![PathBuf::from(p)]);
        assert_eq!(
            t.read_failed(p, look(10, 1), true, 5),
            Failure::RetryAt(5 + 20 * MS)
        );
        assert!(reads(&mut t, 5 + 19 * MS).is_empty());
        assert_eq!(reads(&mut t, 5 + 20 * MS).len(), 1);
        assert_eq!(
            t.read_failed(p, look(10, 1), true, 30 * MS),
            Failure::RetryAt(70 * MS)
        );
        assert_eq!(
            t.read_failed(p, look(10, 1), true, 70 * MS),
            Failure::RetryAt(150 * MS)
        );
        assert_eq!(
            t.read_failed(p, look(10, 1), true, 150 * MS),
            Failure::GiveUp { attempts: 4 }
        );
        assert_eq!(t.status(p), Some(Status::Rejected));
        assert_eq!(t.next_due_ns(), None);
        // The same look again changes nothing; a completed file reopens it.
        t.observe_look(p, 2, look(10, 1), 200 * MS);
        assert_eq!(t.status(p), Some(Status::Rejected));
        t.observe_closed(p, 2, look(30, 9), 300 * MS);
        assert_eq!(t.status(p), Some(Status::Pending));
        assert_eq!(reads(&mut t, 300 * MS), vec![PathBuf::from(p)]);
        assert_eq!(t.first_seen_ns(p), Some(300 * MS));
    }

    #[test]
    fn a_change_cancels_a_scheduled_retry_until_the_file_settles() {
        let mut t = tracker();
        let p = Path::new("v_0005.nii");
        t.observe_look(p, 5, look(100, 1), 0);
        t.observe_look(p, 5, look(100, 1), 50 * MS);
        assert_eq!(reads(&mut t, 50 * MS).len(), 1);
        assert_eq!(
            t.read_failed(p, look(100, 1), true, 50 * MS),
            Failure::RetryAt(70 * MS)
        );
        // The writer starts filling the file before the retry is due.
        t.observe_look(p, 5, look(100, 2), 60 * MS);
        assert!(
            reads(&mut t, 70 * MS).is_empty(),
            "no retry while the file changes"
        );
        t.observe_look(p, 5, look(100, 2), 110 * MS);
        assert_eq!(reads(&mut t, 110 * MS).len(), 1);
    }

    #[test]
    fn a_vanished_file_is_given_up_after_a_while() {
        let mut t = tracker();
        let p = Path::new("p_0006.hdr");
        for k in 0..=ABSENT_LOOKS as u64 {
            t.observe_look(p, 6, None, k * 50 * MS);
        }
        assert_eq!(t.take_abandoned(), vec![PathBuf::from(p)]);
        assert_eq!(t.next_due_ns(), None);
        // It comes back: a fresh start.
        t.observe_closed(p, 6, look(10, 3), 10_000 * MS);
        assert_eq!(reads(&mut t, 10_000 * MS).len(), 1);
    }

    #[test]
    fn a_final_error_gives_up_at_once() {
        let mut t = tracker();
        let p = Path::new("v_0003.nii");
        t.observe_closed(p, 3, look(10, 1), 0);
        reads(&mut t, 0);
        assert_eq!(
            t.read_failed(p, look(10, 1), false, 0),
            Failure::GiveUp { attempts: 1 }
        );
    }

    #[test]
    fn settled_files_reopen_only_when_rewritten() {
        let mut t = tracker();
        let p = Path::new("v_0004.nii");
        t.observe_closed(p, 4, look(10, 1), 0);
        reads(&mut t, 0);
        t.read_succeeded(p, look(10, 1));
        t.observe_look(p, 4, look(10, 1), 100 * MS);
        t.observe_closed(p, 4, look(10, 1), 100 * MS);
        assert!(t.due(200 * MS).is_empty());
        t.observe_closed(p, 4, look(10, 7), 300 * MS);
        assert_eq!(reads(&mut t, 300 * MS), vec![PathBuf::from(p)]);
    }

    #[test]
    fn skipped_files_stay_quiet_and_reads_come_in_index_order() {
        let mut t = tracker();
        t.skip(Path::new("v_0001.nii"), 1, look(5, 5), 0);
        t.observe_closed(Path::new("v_0009.nii"), 9, look(5, 5), 0);
        t.observe_closed(Path::new("v_0003.nii"), 3, look(5, 5), 0);
        assert_eq!(
            reads(&mut t, 0),
            vec![PathBuf::from("v_0003.nii"), PathBuf::from("v_0009.nii")]
        );
        // A missing half of a pair: look again after the stability window.
        t.observe_look(Path::new("p_0004.hdr"), 4, None, 0);
        assert_eq!(t.due(50 * MS), vec![Due::Relook("p_0004.hdr".into())]);
    }
}
