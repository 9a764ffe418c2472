//! Which fault happens to which volume, and when each file operation is due.
//!
//! Pure and seeded: the same options give the same plan, so a test can compute the plan, run
//! the replay and check the reader against the manifest.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The volume is never written.
    Drop,
    /// This volume and the next are written in reverse order: the next at this slot, this one
    /// a quarter TR later.
    Swap,
    /// Written, then written again three quarters of a TR later (a scanner re-export).
    Duplicate,
    /// The file is created at full size filled with zeros, and filled a quarter TR later.
    Preallocate,
    /// The gzip file is written cut in half and completed `complete_late_trs` TRs later.
    TruncateLate,
    /// The gzip file is written cut in half and never completed.
    TruncateNever,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Drop,
        FaultKind::Swap,
        FaultKind::Duplicate,
        FaultKind::Preallocate,
        FaultKind::TruncateLate,
        FaultKind::TruncateNever,
    ];

    pub fn needs_gzip(self) -> bool {
        matches!(self, FaultKind::TruncateLate | FaultKind::TruncateNever)
    }
}

/// One file operation of the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Write the whole file.
    Write,
    /// Write it again, unchanged.
    Rewrite,
    /// Create it at full size, zero-filled.
    Preallocate,
    /// Write the content over the pre-allocated file.
    Fill,
    /// Write the first half of the compressed bytes.
    WriteTruncated,
    /// Write the whole file over the truncated one.
    Complete,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Position in the source run (0-based).
    pub position: usize,
    /// Seconds after the start of the replay, before the speed factor.
    pub at_s: f64,
    pub op: Op,
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub n_volumes: usize,
    pub tr_s: f64,
    pub seed: u64,
    /// Faults at given positions.
    pub explicit: BTreeMap<usize, FaultKind>,
    /// Probability of each fault per volume (applied where no explicit fault is set).
    pub rates: Vec<(FaultKind, f64)>,
    /// Each write is delayed by a uniform draw in `[0, jitter_s]`.
    pub jitter_s: f64,
    pub complete_late_trs: f64,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub faults: BTreeMap<usize, FaultKind>,
    /// Time-ordered.
    pub steps: Vec<Step>,
}

pub fn make_plan(o: &PlanOptions) -> Plan {
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let mut faults = BTreeMap::new();
    let mut position = 0;
    while position < o.n_volumes {
        let mut fault = o.explicit.get(&position).copied();
        if fault.is_none() {
            for &(kind, rate) in &o.rates {
                if rng.random::<f64>() < rate {
                    fault = Some(kind);
                    break;
                }
            }
        }
        // A swap needs a neighbour that has no fault of its own.
        if fault == Some(FaultKind::Swap)
            && (position + 1 >= o.n_volumes || o.explicit.contains_key(&(position + 1)))
        {
            fault = None;
        }
        if let Some(kind) = fault {
            faults.insert(position, kind);
        }
        position += if fault == Some(FaultKind::Swap) { 2 } else { 1 };
    }

    let tr = o.tr_s;
    let mut steps = Vec::new();
    for p in 0..o.n_volumes {
        let jitter = if o.jitter_s > 0.0 {
            rng.random::<f64>() * o.jitter_s
        } else {
            0.0
        };
        let slot = p as f64 * tr + jitter;
        let step = |position, at_s, op| Step { position, at_s, op };
        let swapped_in = p > 0 && faults.get(&(p - 1)) == Some(&FaultKind::Swap);
        if swapped_in {
            continue; // written by its neighbour's swap
        }
        match faults.get(&p) {
            None => steps.push(step(p, slot, Op::Write)),
            Some(FaultKind::Drop) => {}
            Some(FaultKind::Swap) => {
                steps.push(step(p + 1, slot, Op::Write));
                steps.push(step(p, slot + tr / 4.0, Op::Write));
            }
            Some(FaultKind::Duplicate) => {
                steps.push(step(p, slot, Op::Write));
                steps.push(step(p, slot + tr * 0.75, Op::Rewrite));
            }
            Some(FaultKind::Preallocate) => {
                steps.push(step(p, slot, Op::Preallocate));
                steps.push(step(p, slot + tr / 4.0, Op::Fill));
            }
            Some(FaultKind::TruncateLate) => {
                steps.push(step(p, slot, Op::WriteTruncated));
                steps.push(step(p, slot + o.complete_late_trs * tr, Op::Complete));
            }
            Some(FaultKind::TruncateNever) => steps.push(step(p, slot, Op::WriteTruncated)),
        }
    }
    steps.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    Plan { faults, steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> PlanOptions {
        PlanOptions {
            n_volumes: 10,
            tr_s: 1.0,
            seed: 3,
            explicit: BTreeMap::new(),
            rates: Vec::new(),
            jitter_s: 0.0,
            complete_late_trs: 2.0,
        }
    }

    #[test]
    fn explicit_faults_shape_the_steps() {
        let mut o = options();
        o.explicit = [
            (1, FaultKind::Drop),
            (3, FaultKind::Swap),
            (6, FaultKind::TruncateLate),
        ]
        .into_iter()
        .collect();
        let plan = make_plan(&o);
        let order: Vec<(usize, Op)> = plan.steps.iter().map(|s| (s.position, s.op)).collect();
        assert_eq!(
            order,
            vec![
                (0, Op::Write),
                (2, Op::Write),
                (4, Op::Write),
                (3, Op::Write),
                (5, Op::Write),
                (6, Op::WriteTruncated),
                (7, Op::Write),
                (6, Op::Complete), // at 8.0 s, the same time as 8: steps keep position order
                (8, Op::Write),
                (9, Op::Write),
            ]
        );
        assert_eq!(plan.steps[2].at_s, 3.0);
        assert_eq!(plan.steps[3].at_s, 3.25);
    }

    #[test]
    fn rates_are_seeded_and_a_swap_never_leaves_the_run() {
        let mut o = options();
        o.n_volumes = 200;
        o.rates = vec![(FaultKind::Drop, 0.1), (FaultKind::Swap, 0.1)];
        o.jitter_s = 0.2;
        let a = make_plan(&o);
        let b = make_plan(&o);
        assert_eq!(a.faults, b.faults);
        assert_eq!(a.steps, b.steps);
        let drops = a.faults.values().filter(|k| **k == FaultKind::Drop).count();
        assert!((8..=35).contains(&drops), "{drops} drops of 200 at 10 %");
        let writes = a.steps.iter().filter(|s| s.op == Op::Write).count();
        assert_eq!(writes, 200 - drops);
        assert!(a.steps.iter().all(|s| s.position < 200));
        o.seed = 4;
        assert_ne!(make_plan(&o).faults, a.faults);
    }
}
