//! The reorder buffer: decoded volumes (in any order) → one in-order stream with explicit gaps.
//!
//! Keyed by acquisition index. The next expected volume has a deadline: `deadline_tr` × TR after
//! the previous volume's arrival (its decode time: comparing decode to decode keeps the
//! detection latency of polling out of the margin). Precisely, every volume delivered in order
//! predicts when each later index is due (its arrival + one TR per index); the deadline is the
//! latest such prediction plus `deadline_tr - 1` TRs. So two neighbours written in swapped order
//! do not make the next volume look late, and consecutive missing volumes fall one TR apart.
//! Late volumes move no deadline (a file completed long after its slot says nothing of the
//! schedule). When a deadline passes, `Missing` is emitted and the stream moves on. A volume for a slot already declared missing or rejected
//! comes out as `Late`; a second file for a delivered index as `Duplicate`. The run ends at the
//! configured volume count or after `quiet_trs` TRs without any file.
//!
//! Pure logic with injected time (`now_ns` arguments), so every rule is unit-tested without
//! sleeping. It never reads files and never drops a delivered volume.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use super::events::{EndReason, IngestCounts, IngestEvent};
use super::volume::Volume;

#[derive(Debug, Clone)]
pub struct SequencerSettings {
    pub first_index: u32,
    /// Volumes in the run, when known.
    pub total: Option<u32>,
    /// Repetition time, when known (otherwise taken from the first volume's header).
    pub tr_ns: Option<u64>,
    pub deadline_tr: f64,
    pub quiet_trs: f64,
}

enum Slot {
    Volume(Box<Volume>),
    Rejected {
        path: PathBuf,
        reason: String,
        at_ns: u64,
    },
}

pub struct Sequencer {
    settings: SequencerSettings,
    next: u32,
    /// max over in-order arrivals of (arrival - index x TR): when index 0 "would have" come.
    phase_ns: Option<i128>,
    /// Deadline of the first volume when none has been delivered but later ones wait.
    first_deadline_ns: Option<u64>,
    waiting: BTreeMap<u32, Slot>,
    delivered: HashMap<u32, PathBuf>,
    /// Slots declared missing or rejected: a valid volume for one of these is `Late`.
    gaps: HashSet<u32>,
    /// Slots declared missing (a subset of `gaps`).
    missing: BTreeSet<u32>,
    last_activity_ns: Option<u64>,
    last_delivered: Option<u32>,
    counts: IngestCounts,
    ended: bool,
    out: Vec<IngestEvent>,
}

impl Sequencer {
    pub fn new(settings: SequencerSettings) -> Sequencer {
        Sequencer {
            next: settings.first_index,
            settings,
            phase_ns: None,
            first_deadline_ns: None,
            waiting: BTreeMap::new(),
            delivered: HashMap::new(),
            gaps: HashSet::new(),
            missing: BTreeSet::new(),
            last_activity_ns: None,
            last_delivered: None,
            counts: IngestCounts::default(),
            ended: false,
            out: Vec::new(),
        }
    }

    pub fn tr_ns(&self) -> Option<u64> {
        self.settings.tr_ns
    }

    /// Sets the TR when the configuration left it to the headers.
    pub fn set_tr_ns(&mut self, tr_ns: u64) {
        if self.settings.tr_ns.is_none() && tr_ns > 0 {
            self.settings.tr_ns = Some(tr_ns);
        }
    }

    /// Moves every deadline and the quiet-time end `ns` later: the export folder was out of
    /// reach that long (an unmounted share), and what the scanner wrote meanwhile is still to
    /// be seen, so nothing may be declared missing or quiet for that time.
    pub fn hold_for(&mut self, ns: u64) {
        self.phase_ns = self.phase_ns.map(|p| p + ns as i128);
        self.first_deadline_ns = self.first_deadline_ns.map(|d| d.saturating_add(ns));
        self.last_activity_ns = self.last_activity_ns.map(|a| a.saturating_add(ns));
    }

    /// Starts the stream at `index` (files already present were skipped).
    pub fn start_at(&mut self, index: u32) {
        self.next = self.next.max(index);
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    #[cfg(test)]
    pub fn counts(&self) -> &IngestCounts {
        &self.counts
    }

    pub fn take_events(&mut self) -> Vec<IngestEvent> {
        std::mem::take(&mut self.out)
    }

    fn tr_times(&self, factor: f64) -> Option<u64> {
        self.settings.tr_ns.map(|tr| (tr as f64 * factor) as u64)
    }

    pub fn offer_volume(&mut self, volume: Volume, now_ns: u64) {
        if self.ended {
            return;
        }
        self.last_activity_ns = Some(now_ns);
        if volume.non_finite > 0 {
            self.counts.non_finite_volumes += 1;
        }
        let index = volume.index;
        if index < self.next {
            if let Some(first) = self.delivered.get(&index) {
                self.duplicate(index, volume.path, first.clone(), now_ns);
            } else if self.gaps.remove(&index) {
                self.delivered.insert(index, volume.path.clone());
                self.counts.late += 1;
                self.out.push(IngestEvent::Late(volume));
            } else {
                self.out.push(IngestEvent::Warning {
                    message: format!(
                        "{}: index {index} is before the start of the stream ({}); ignored",
                        volume.path.display(),
                        self.settings.first_index
                    ),
                    at_ns: now_ns,
                });
            }
        } else {
            match self.waiting.get(&index) {
                Some(Slot::Volume(first)) => {
                    let first = first.path.clone();
                    self.duplicate(index, volume.path, first, now_ns);
                }
                // A valid file replaces a rejected one still waiting for its turn.
                _ => {
                    self.waiting.insert(index, Slot::Volume(Box::new(volume)));
                }
            }
        }
        self.drain(now_ns);
    }

    pub fn offer_rejected(
        &mut self,
        index: Option<u32>,
        path: PathBuf,
        reason: String,
        now_ns: u64,
    ) {
        if self.ended {
            return;
        }
        self.last_activity_ns = Some(now_ns);
        self.counts.rejected += 1;
        let slot_free = index.is_some_and(|i| i >= self.next && !self.waiting.contains_key(&i));
        match index {
            Some(i) if slot_free => {
                self.waiting.insert(
                    i,
                    Slot::Rejected {
                        path,
                        reason,
                        at_ns: now_ns,
                    },
                );
            }
            _ => self.out.push(IngestEvent::Rejected {
                index,
                path,
                reason,
                at_ns: now_ns,
            }),
        }
        self.drain(now_ns);
    }

    fn duplicate(&mut self, index: u32, path: PathBuf, first_path: PathBuf, at_ns: u64) {
        self.counts.duplicates += 1;
        self.out.push(IngestEvent::Duplicate {
            index,
            path,
            first_path,
            at_ns,
        });
    }

    /// Emits every waiting slot that is next in order.
    fn drain(&mut self, now_ns: u64) {
        while !self.ended {
            let Some(slot) = self.waiting.remove(&self.next) else {
                break;
            };
            let index = self.next;
            match slot {
                Slot::Volume(v) => {
                    self.observe_arrival(index, v.read_ns);
                    self.delivered.insert(index, v.path.clone());
                    self.counts.delivered += 1;
                    self.last_delivered = Some(index);
                    self.out.push(IngestEvent::Volume(*v));
                }
                Slot::Rejected {
                    path,
                    reason,
                    at_ns,
                } => {
                    // A rejection's time (after retries) says nothing of the schedule.
                    self.gaps.insert(index);
                    self.out.push(IngestEvent::Rejected {
                        index: Some(index),
                        path,
                        reason,
                        at_ns,
                    });
                }
            }
            self.next += 1;
            self.check_total(now_ns);
        }
        // Nothing delivered yet but later volumes are here: the first is due half a TR
        // (deadline_tr - 1) after the earliest of them.
        if self.phase_ns.is_none() && self.first_deadline_ns.is_none() {
            let earliest = self
                .waiting
                .values()
                .map(|s| match s {
                    Slot::Volume(v) => v.read_ns,
                    Slot::Rejected { at_ns, .. } => *at_ns,
                })
                .min();
            if let (Some(t), Some(slack)) =
                (earliest, self.tr_times(self.settings.deadline_tr - 1.0))
            {
                self.first_deadline_ns = Some(t.saturating_add(slack));
            }
        }
    }

    fn declare_missing(&mut self, deadline_ns: u64) {
        self.gaps.insert(self.next);
        self.missing.insert(self.next);
        self.counts.missing += 1;
        self.out.push(IngestEvent::Missing {
            index: self.next,
            deadline_ns,
        });
        self.next += 1;
    }

    fn observe_arrival(&mut self, index: u32, at_ns: u64) {
        if let Some(tr) = self.settings.tr_ns {
            let phase = at_ns as i128 - index as i128 * tr as i128;
            self.phase_ns = Some(self.phase_ns.map_or(phase, |p| p.max(phase)));
        }
    }

    /// When the next index is due.
    fn deadline_ns(&self) -> Option<u64> {
        let tr = self.settings.tr_ns? as f64;
        match self.phase_ns {
            Some(phase) => {
                let due = phase as f64 + (self.next as f64 - 1.0 + self.settings.deadline_tr) * tr;
                Some(due.max(0.0) as u64)
            }
            None => self.first_deadline_ns,
        }
    }

    fn check_total(&mut self, now_ns: u64) {
        if let Some(total) = self.settings.total {
            if self.next >= self.settings.first_index.saturating_add(total) {
                self.finish(EndReason::AllVolumes, now_ns);
            }
        }
    }

    /// Applies deadlines and the quiet-time end at `now_ns`.
    pub fn tick(&mut self, now_ns: u64) {
        while !self.ended {
            match self.deadline_ns() {
                Some(deadline) if now_ns >= deadline => {
                    // Before any volume was delivered, a deadline that passes with later volumes
                    // waiting means everything below the earliest of them is missing at once.
                    let upto = match (self.phase_ns, self.waiting.keys().next()) {
                        (None, Some(&first_waiting)) => first_waiting.max(self.next + 1),
                        _ => self.next + 1,
                    };
                    let end = self
                        .settings
                        .total
                        .map_or(u32::MAX, |t| self.settings.first_index.saturating_add(t));
                    let upto = upto.min(end).max(self.next + 1);
                    while self.next < upto {
                        self.declare_missing(deadline);
                    }
                    if self.phase_ns.is_none() {
                        self.first_deadline_ns =
                            self.settings.tr_ns.map(|tr| deadline.saturating_add(tr));
                    }
                    self.check_total(now_ns);
                    self.drain(now_ns);
                }
                _ => break,
            }
        }
        if let (Some(last), Some(quiet)) = (
            self.last_activity_ns,
            self.tr_times(self.settings.quiet_trs),
        ) {
            if !self.ended && now_ns >= last.saturating_add(quiet) {
                self.finish(EndReason::Quiet, now_ns);
            }
        }
    }

    /// When `tick` next has something to do.
    pub fn next_wakeup_ns(&self) -> Option<u64> {
        if self.ended {
            return None;
        }
        let quiet = self
            .last_activity_ns
            .zip(self.tr_times(self.settings.quiet_trs))
            .map(|(a, q)| a.saturating_add(q));
        [self.deadline_ns(), quiet].into_iter().flatten().min()
    }

    /// Ends the run (also used when stopped from outside). Volumes still waiting behind a gap
    /// are delivered first, in order, so nothing received is lost.
    pub fn finish(&mut self, reason: EndReason, now_ns: u64) {
        if self.ended {
            return;
        }
        if reason != EndReason::AllVolumes {
            let rest = std::mem::take(&mut self.waiting);
            for (index, slot) in rest {
                if self.ended {
                    break;
                }
                while self.next < index {
                    self.declare_missing(now_ns);
                }
                self.waiting.insert(index, slot);
                self.drain(now_ns);
            }
            if self.ended {
                return; // the volume count was reached while draining
            }
        }
        // With an unknown run length, Missing records after the last volume were past the end
        // of the scan, not lost volumes: they are not counted.
        if self.settings.total.is_none() {
            let last = self.last_delivered.unwrap_or(0);
            let trailing = self.missing.range(last.saturating_add(1)..).count() as u32;
            self.counts.missing -= trailing.min(self.counts.missing);
        }
        self.ended = true;
        self.out.push(IngestEvent::RunEnded {
            reason,
            last_index: self.last_delivered,
            counts: self.counts.clone(),
            at_ns: now_ns,
        });
    }
}

#[cfg(test)]
#[path = "sequencer_tests.rs"]
mod tests;
