//! What a soak measured, judged against its budgets: RSS flat within ±5 % after warm-up, no
//! missed or misread volume, the p99 latency of the last 1 000 volumes within 1.2x of the second
//! 1 000's, and (the delivery check) both feedback subscribers receiving every volume and sample
//! record with every sample decoded. `Display` prints the whole report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use brainmclip::event::RunSummary;
use brainmclip::ingest::IngestCounts;

use super::feed::{
    Collected, RssSample, SampleSeen, Tally, VolumeSeen, Written, COLLECTOR, RSS_EVERY, SUBSCRIBERS,
};
use super::{Schedule, Signature, SoakOptions};

#[path = "content.rs"]
mod content;
#[path = "text.rs"]
mod text;

use content::{check_content, distinguishable};
pub use content::{Deviation, GLOBAL_TOLERANCE, MOTION_TOLERANCE};

/// Volumes per latency block.
pub const BLOCK: usize = 1000;
pub const RSS_TOLERANCE: f64 = 0.05;
pub const LATENCY_RATIO: f64 = 1.2;
/// Examples kept of each kind of problem.
const EXAMPLES: usize = 10;

/// What `run_soak` hands over for judging.
pub struct Inputs {
    pub schedule: Schedule,
    pub options: SoakOptions,
    pub expected: Vec<Option<Signature>>,
    pub collected: Collected,
    pub subscribers: Vec<Tally>,
    pub written: Written,
    pub summary: RunSummary,
    pub sink_problems: Vec<String>,
    pub setup_s: f64,
    pub run_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The run was too short for this budget.
    NotMeasured,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotMeasured => "not measured",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct LatencyBlock {
    /// Positions `first..end` (0-based).
    pub first: usize,
    pub end: usize,
    pub volumes: usize,
    /// A volume's file event to its preprocessed event.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Trials whose last volume is in the block: that volume's file event to the trial decoded.
    pub trials: usize,
    pub decode_p50_ms: Option<f64>,
    pub decode_p99_ms: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct SubscriberReport {
    pub records: u64,
    /// Preprocessed volumes whose record never reached this subscriber.
    pub volumes_missing: usize,
    pub volumes_repeated: usize,
    /// Samples the session made whose record never reached this subscriber.
    pub samples_missing: usize,
    pub lag_notices: u64,
    pub unreadable_lines: u64,
    pub ended: bool,
    pub problem: Option<String>,
}

impl SubscriberReport {
    fn of(t: &Tally, volumes: &[VolumeSeen], samples: &[SampleSeen]) -> SubscriberReport {
        let received = |position: usize| t.volume_records.get(position).copied().unwrap_or(0);
        SubscriberReport {
            records: t.records,
            volumes_missing: volumes.iter().filter(|v| received(v.position) == 0).count(),
            volumes_repeated: t.volume_records.iter().filter(|&&k| k > 1).count(),
            samples_missing: samples
                .iter()
                .filter(|s| !t.samples.contains(&s.trial))
                .count(),
            lag_notices: t.lag_notices,
            unreadable_lines: t.unreadable_lines,
            ended: t.ended,
            problem: t.problem.clone(),
        }
    }

    pub fn complete(&self) -> bool {
        self.volumes_missing == 0
            && self.volumes_repeated == 0
            && self.samples_missing == 0
            && self.lag_notices == 0
            && self.unreadable_lines == 0
            && self.ended
    }
}

#[derive(Debug, Clone)]
pub struct SoakReport {
    pub schedule: Schedule,
    pub options: SoakOptions,
    pub setup_s: f64,
    pub run_s: f64,
    pub written: usize,
    pub writer_max_late_ms: f64,
    pub late_writes: usize,
    pub preprocessed: usize,
    pub dummies: usize,
    /// Positions never delivered, as a volume or a dummy scan.
    pub missed: Vec<usize>,
    pub duplicated: usize,
    pub outside: usize,
    /// Ingest records that are not in-order volumes, by kind (missing, late, ...).
    pub gaps: BTreeMap<&'static str, usize>,
    pub gap_examples: Vec<String>,
    pub warnings: Vec<String>,
    pub warnings_total: usize,
    pub errors: Vec<String>,
    pub errors_total: usize,
    pub checked: usize,
    pub misread: usize,
    pub misread_examples: Vec<String>,
    pub deviation_first_cycle: Deviation,
    pub deviation_later_cycles: Deviation,
    /// Source volumes whose figures no other source volume's match within the tolerance.
    pub distinguishable: usize,
    pub source_volumes: usize,
    pub samples: usize,
    pub decoded: usize,
    pub undecoded: usize,
    pub generated: usize,
    pub skipped_by_generator: usize,
    pub counts: IngestCounts,
    pub subscribers: Vec<SubscriberReport>,
    pub rss: Vec<RssSample>,
    /// Volumes before RSS is held to its budget (the sample there is the reference).
    pub warm_up: u32,
    pub blocks: Vec<LatencyBlock>,
    pub sink_problems: Vec<String>,
    pub files_not_removed: usize,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms_between(later_ns: u64, earlier_ns: u64) -> f64 {
    later_ns.saturating_sub(earlier_ns) as f64 / 1e6
}

fn latency_blocks(schedule: &Schedule, c: &Collected) -> Vec<LatencyBlock> {
    let n = schedule.volumes as usize;
    let count = n.div_ceil(BLOCK);
    let mut volume_ms: Vec<Vec<f64>> = vec![Vec::new(); count];
    let mut seen_ns: Vec<Option<u64>> = vec![None; n];
    for v in &c.volumes {
        volume_ms[v.position / BLOCK].push(ms_between(v.preprocessed_ns, v.seen_ns));
        seen_ns[v.position] = Some(v.seen_ns);
    }
    let last_volume: HashMap<u64, usize> = c
        .samples
        .iter()
        .filter_map(|s| s.last_position.map(|p| (s.trial, p)))
        .collect();
    let mut decode_ms: Vec<Vec<f64>> = vec![Vec::new(); count];
    for d in &c.decoded {
        let Some(&position) = last_volume.get(&d.trial) else {
            continue;
        };
        if let Some(seen) = seen_ns[position] {
            decode_ms[position / BLOCK].push(ms_between(d.decoded_ns, seen));
        }
    }
    (0..count)
        .map(|b| {
            let mut volumes = std::mem::take(&mut volume_ms[b]);
            let mut trials = std::mem::take(&mut decode_ms[b]);
            volumes.sort_by(f64::total_cmp);
            trials.sort_by(f64::total_cmp);
            LatencyBlock {
                first: b * BLOCK,
                end: ((b + 1) * BLOCK).min(n),
                volumes: volumes.len(),
                p50_ms: percentile(&volumes, 0.5),
                p99_ms: percentile(&volumes, 0.99),
                trials: trials.len(),
                decode_p50_ms: percentile(&trials, 0.5),
                decode_p99_ms: percentile(&trials, 0.99),
            }
        })
        .collect()
}

/// The RSS reference point: 1 000 volumes in a long run, half the run (in 500s) in a short one.
fn warm_up_volumes(volumes: u32) -> u32 {
    let block = BLOCK as u32;
    if volumes >= 2 * block {
        block
    } else {
        (volumes / 2 / RSS_EVERY * RSS_EVERY).max(RSS_EVERY)
    }
}

/// Least-squares RSS trend over `samples`, MiB per 1 000 volumes.
fn trend_mib_per_1000(samples: &[&RssSample]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_x = samples.iter().map(|s| f64::from(s.volumes)).sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| s.kib as f64).sum::<f64>() / n;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for s in samples {
        let dx = f64::from(s.volumes) - mean_x;
        sxx += dx * dx;
        sxy += dx * (s.kib as f64 - mean_y);
    }
    (sxx > 0.0).then(|| sxy / sxx * 1000.0 / 1024.0)
}

fn optional_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

impl SoakReport {
    pub fn new(inputs: Inputs) -> SoakReport {
        let Inputs {
            schedule,
            options,
            expected,
            collected: c,
            subscribers,
            written,
            summary,
            sink_problems,
            setup_s,
            run_s,
        } = inputs;
        let n = schedule.volumes as usize;
        let mut delivered = vec![0u32; n];
        for position in c
            .volumes
            .iter()
            .map(|v| v.position)
            .chain(c.dummies.iter().copied())
        {
            delivered[position] += 1;
        }
        let mut gaps = BTreeMap::new();
        let mut gap_examples = Vec::new();
        for (kind, index) in &c.gaps {
            *gaps.entry(*kind).or_insert(0) += 1;
            if gap_examples.len() < EXAMPLES {
                gap_examples.push(match index {
                    Some(i) => format!("{kind} {i}"),
                    None => kind.to_string(),
                });
            }
        }
        let content = check_content(&schedule, &expected, &c.volumes);
        let (apart, sources) = distinguishable(&expected);
        let decoded: HashSet<u64> = c.decoded.iter().map(|d| d.trial).collect();
        SoakReport {
            schedule,
            setup_s,
            run_s,
            written: written.count,
            writer_max_late_ms: written.max_late_ms,
            late_writes: written.late_writes,
            preprocessed: c.volumes.len(),
            dummies: c.dummies.len(),
            missed: (0..n).filter(|&p| delivered[p] == 0).collect(),
            duplicated: delivered.iter().filter(|&&k| k > 1).count(),
            outside: c.outside.len(),
            gaps,
            gap_examples,
            warnings: c.warnings.clone(),
            warnings_total: c.warnings_total,
            errors: c.errors.clone(),
            errors_total: c.errors_total,
            checked: content.checked,
            misread: content.misread,
            misread_examples: content.examples,
            deviation_first_cycle: content.first,
            deviation_later_cycles: content.later,
            distinguishable: apart,
            source_volumes: sources,
            samples: c.samples.len(),
            decoded: c.decoded.len(),
            undecoded: c
                .samples
                .iter()
                .filter(|s| !decoded.contains(&s.trial))
                .count(),
            generated: c.generated,
            skipped_by_generator: summary.skipped_by_generator,
            counts: summary.counts.clone(),
            subscribers: subscribers
                .iter()
                .map(|t| SubscriberReport::of(t, &c.volumes, &c.samples))
                .collect(),
            rss: c.rss.clone(),
            warm_up: warm_up_volumes(schedule.volumes),
            blocks: latency_blocks(&schedule, &c),
            sink_problems,
            files_not_removed: c.not_removed,
            options,
        }
    }

    /// Every scanner index delivered exactly once, no gap record, none misread.
    pub fn no_missed_or_misread(&self) -> bool {
        let c = &self.counts;
        self.written == self.schedule.volumes as usize
            && self.missed.is_empty()
            && self.duplicated == 0
            && self.outside == 0
            && self.gaps.values().sum::<usize>() == 0
            && self.misread == 0
            && c.missing + c.late + c.rejected + c.duplicates == 0
    }

    /// Both subscribers got every volume and sample record, none dropped.
    pub fn subscribers_complete(&self) -> bool {
        self.subscribers.len() == SUBSCRIBERS
            && self.subscribers.iter().all(SubscriberReport::complete)
    }

    /// RSS at the last sample over RSS at `volumes` (e.g. 1.02 for 2 % growth).
    pub fn rss_growth_since(&self, volumes: u32) -> Option<f64> {
        let from = self.rss.iter().find(|s| s.volumes == volumes)?;
        let last = self.rss.last()?;
        (from.kib > 0 && last.volumes > volumes).then(|| last.kib as f64 / from.kib as f64)
    }

    /// Whether the soak's own sink missed events (its figures would then be incomplete).
    fn collector_fell_behind(&self) -> bool {
        let ours = format!("sink {COLLECTOR}:");
        self.sink_problems.iter().any(|p| p.starts_with(&ours))
    }

    pub fn budgets(&self) -> [Budget; 4] {
        [
            self.rss_budget(),
            self.volume_budget(),
            self.latency_budget(),
            self.delivery_budget(),
        ]
    }

    /// No budget failed (one the run was too short for does not count against it).
    pub fn passed(&self) -> bool {
        self.budgets().iter().all(|b| b.verdict != Verdict::Fail)
    }

    fn rss_budget(&self) -> Budget {
        let name = format!(
            "RSS flat within ±{:.0} % after warm-up ({} volumes)",
            RSS_TOLERANCE * 100.0,
            self.warm_up
        );
        let reference = self.rss.iter().find(|s| s.volumes == self.warm_up);
        let after: Vec<&RssSample> = self
            .rss
            .iter()
            .filter(|s| s.volumes > self.warm_up)
            .collect();
        let Some(reference) = reference.filter(|r| r.kib > 0 && !after.is_empty()) else {
            let detail = if self.rss.is_empty() {
                "no RSS readings (/proc/self/status)".to_string()
            } else {
                format!("needs RSS samples at and after volume {}", self.warm_up)
            };
            return Budget {
                name,
                verdict: Verdict::NotMeasured,
                detail,
            };
        };
        let (mut change, mut at) = (0.0f64, reference.volumes);
        for s in &after {
            let c = s.kib as f64 / reference.kib as f64 - 1.0;
            if c.abs() > change.abs() {
                (change, at) = (c, s.volumes);
            }
        }
        let mut from_reference = vec![reference];
        from_reference.extend(after.iter().copied());
        let trend = trend_mib_per_1000(&from_reference).map_or_else(String::new, |t| {
            format!("; trend {t:+.2} MiB per 1000 volumes")
        });
        Budget {
            name,
            verdict: if change.abs() <= RSS_TOLERANCE {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            detail: format!(
                "largest change {:+.1} % at volume {at}, from {:.1} MiB at volume {}{trend}",
                change * 100.0,
                reference.kib as f64 / 1024.0,
                self.warm_up
            ),
        }
    }

    fn volume_budget(&self) -> Budget {
        let c = &self.counts;
        Budget {
            name: "no missed or misread volume".into(),
            verdict: if self.no_missed_or_misread() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            detail: format!(
                "{} of {} written; {} missed, {} delivered twice, {} gap records, {} misread of \
                 {} checked; ingest counted {} missing, {} late, {} rejected, {} duplicates",
                self.written,
                self.schedule.volumes,
                self.missed.len(),
                self.duplicated,
                self.gaps.values().sum::<usize>(),
                self.misread,
                self.checked,
                c.missing,
                c.late,
                c.rejected,
                c.duplicates
            ),
        }
    }

    fn latency_budget(&self) -> Budget {
        let name = format!(
            "p99 latency (file event -> preprocessed), last {BLOCK} volumes within \
             {LATENCY_RATIO}x of the second {BLOCK}"
        );
        let full: Vec<&LatencyBlock> = self
            .blocks
            .iter()
            .filter(|b| b.end - b.first == BLOCK)
            .collect();
        // The second block against the last full one (the same block in a 2 000-volume run).
        let measured = match (full.get(1), full.last()) {
            (Some(second), Some(last)) => second.p99_ms.zip(last.p99_ms),
            _ => None,
        };
        match measured {
            Some((second, last)) if second > 0.0 => {
                let ratio = last / second;
                Budget {
                    name,
                    verdict: if ratio <= LATENCY_RATIO {
                        Verdict::Pass
                    } else {
                        Verdict::Fail
                    },
                    detail: format!("{last:.2} ms / {second:.2} ms = {ratio:.2}x"),
                }
            }
            _ => Budget {
                name,
                verdict: Verdict::NotMeasured,
                detail: format!("needs at least {} volumes", 2 * BLOCK),
            },
        }
    }

    fn delivery_budget(&self) -> Budget {
        let complete =
            self.subscribers_complete() && self.undecoded == 0 && !self.collector_fell_behind();
        let per_subscriber: Vec<String> = self
            .subscribers
            .iter()
            .enumerate()
            .map(|(k, s)| {
                format!(
                    "subscriber {}: {} volume and {} sample records missing, {} lag notices",
                    k + 1,
                    s.volumes_missing,
                    s.samples_missing,
                    s.lag_notices
                )
            })
            .collect();
        Budget {
            name: format!(
                "feedback: {SUBSCRIBERS} subscribers got every volume and sample record, every \
                 sample decoded"
            ),
            verdict: if complete {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            detail: format!(
                "{}; {} of {} samples not decoded{}",
                per_subscriber.join("; "),
                self.undecoded,
                self.samples,
                if self.collector_fell_behind() {
                    "; the soak's own sink fell behind"
                } else {
                    ""
                }
            ),
        }
    }
}
