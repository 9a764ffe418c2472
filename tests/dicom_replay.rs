//! Real DICOM series replayed into a watched folder with every fault kind, with inotify events
//! and with polling, read back by the live ingest: every volume equals what the reader makes of
//! the original files, drops are missing, swaps come out in order, re-exports are duplicates,
//! pre-allocated and truncated files are never read as volumes, and a truncated file completed
//! later comes out late. Mosaic (one file per volume), XA enhanced (one multi-frame file per
//! volume) and GE single slices (32 files per volume).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brainmclip::config::WatchMode;
use brainmclip::ingest::dicom::read_series;
use brainmclip::ingest::replay::{run_replay, FaultKind, ReplayOptions, WriteMode};
use brainmclip::ingest::{Ingest, IngestEvent};
use common::{collect_timed, session, summary};

/// Long enough that "missing by its deadline, then late" keeps tens of ms of margin on a
/// loaded machine.
const TR_S: f64 = 0.25;

fn real(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom/real")
        .join(dir)
}

const MOSAIC: &str = "siemens-mosaic/In/ep2d_Int_HF_5";
const ENHANCED: &str = "siemens-xa30-enhanced/In/7_func-bold_task-fa_run-1";
const GE: &str = "ge-single-slice/In/SliceTimingRT/2_epiRT_IntAsc_GD0";

struct Outcome {
    events: Vec<IngestEvent>,
    expected: Vec<Vec<f32>>,
}

fn replay(
    series: &str,
    n: usize,
    watch: WatchMode,
    faults: &[(u32, FaultKind)],
    configure: impl FnOnce(&mut ReplayOptions),
) -> Outcome {
    let source = real(series);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let expected = read_series(&files, 0, 1 << 26)
        .unwrap()
        .into_iter()
        .map(|v| v.volume.data)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    let config = session(&export, watch, TR_S, n as u32);
    let ingest = Ingest::start(&config).unwrap();
    let mut options = ReplayOptions::new(&source, &export);
    options.tr_s = Some(TR_S);
    options.limit = Some(n);
    options.manifest = Some(dir.path().join("manifest.json"));
    options.faults_at = faults.iter().copied().collect::<BTreeMap<_, _>>();
    configure(&mut options);
    let writer = std::thread::spawn(move || run_replay(&options).unwrap());
    let events = collect_timed(&ingest, Duration::from_secs(60))
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    writer.join().unwrap();
    Outcome { events, expected }
}

impl Outcome {
    fn picture(&self) -> String {
        summary(&self.events).join(" ")
    }

    fn indices(&self, pick: impl Fn(&IngestEvent) -> Option<u32>) -> Vec<u32> {
        self.events.iter().filter_map(pick).collect()
    }

    fn volumes(&self) -> Vec<u32> {
        self.indices(|e| match e {
            IngestEvent::Volume(v) => Some(v.index),
            _ => None,
        })
    }

    fn late(&self) -> Vec<u32> {
        self.indices(|e| match e {
            IngestEvent::Late(v) => Some(v.index),
            _ => None,
        })
    }

    fn missing(&self) -> Vec<u32> {
        self.indices(|e| match e {
            IngestEvent::Missing { index, .. } => Some(*index),
            _ => None,
        })
    }

    fn duplicates(&self) -> Vec<u32> {
        self.indices(|e| match e {
            IngestEvent::Duplicate { index, .. } => Some(*index),
            _ => None,
        })
    }

    /// Every volume equals the reader's volume of the original files; every index of 1..=n is
    /// accounted for in order.
    fn check_common(&self, n: usize) {
        let picture = self.picture();
        for e in &self.events {
            if let IngestEvent::Volume(v) | IngestEvent::Late(v) = e {
                let expected = &self.expected[v.index as usize - 1];
                assert!(
                    v.data.len() == expected.len()
                        && v.data
                            .iter()
                            .zip(expected)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "volume {} differs from the source: {picture}",
                    v.index
                );
                // (GE's first volume has zero RTIA times for some slices: no timing there.)
                assert!(
                    v.slice_times_s.is_some() || v.index == 1,
                    "slice timing carried"
                );
            }
        }
        let mut in_order = self.indices(|e| match e {
            IngestEvent::Volume(v) => Some(v.index),
            IngestEvent::Missing { index, .. } => Some(*index),
            IngestEvent::Rejected { index: Some(i), .. } => Some(*i),
            _ => None,
        });
        in_order.sort();
        in_order.dedup();
        assert_eq!(in_order, (1..=n as u32).collect::<Vec<_>>(), "{picture}");
        assert!(matches!(
            self.events.last(),
            Some(IngestEvent::RunEnded { .. })
        ));
    }
}

/// Drops, swaps and a re-export in one run of `n` volumes (needs n >= 6; the re-export of 5
/// comes before 6, so before the run's end).
fn reorder_faults(series: &str, n: usize, watch: WatchMode) {
    let o = replay(
        series,
        n,
        watch,
        &[
            (2, FaultKind::Drop),
            (3, FaultKind::Swap),
            (5, FaultKind::Duplicate),
        ],
        |_| {},
    );
    o.check_common(n);
    let p = o.picture();
    assert_eq!(o.missing(), [2], "{p}");
    let mut expected: Vec<u32> = (1..=n as u32).collect();
    expected.retain(|&i| i != 2);
    assert_eq!(o.volumes(), expected, "swapped 3/4 come out in order: {p}");
    assert_eq!(o.duplicates(), [5], "{p}");
}

/// Pre-allocation and truncation (completed later, and never) in one run.
fn incomplete_files(series: &str, n: usize, watch: WatchMode) {
    let o = replay(
        series,
        n,
        watch,
        &[
            (2, FaultKind::Preallocate),
            (3, FaultKind::TruncateLate),
            (5, FaultKind::TruncateNever),
        ],
        |_| {},
    );
    o.check_common(n);
    let p = o.picture();
    let volumes = o.volumes();
    assert!(
        volumes.contains(&2),
        "pre-allocated then filled is read: {p}"
    );
    assert!(!volumes.contains(&3) && !volumes.contains(&5), "{p}");
    assert_eq!(o.late(), [3], "completed after its deadline: {p}");
}

#[test]
fn mosaic_reorder_faults_with_events() {
    reorder_faults(MOSAIC, 6, WatchMode::Events);
}

#[test]
fn mosaic_incomplete_files_with_polling() {
    incomplete_files(MOSAIC, 6, WatchMode::Poll);
}

#[test]
fn mosaic_incomplete_files_with_events_and_chunked_writes() {
    let o = replay(
        MOSAIC,
        6,
        WatchMode::Events,
        &[(4, FaultKind::TruncateNever)],
        |r| {
            r.write = WriteMode::Chunked {
                chunk_bytes: 32 * 1024,
                pause: Duration::from_millis(2),
            };
        },
    );
    o.check_common(6);
    assert_eq!(o.volumes(), [1, 2, 3, 5, 6], "{}", o.picture());
}

#[test]
fn enhanced_reorder_and_incomplete_faults() {
    reorder_faults(ENHANCED, 8, WatchMode::Poll);
    incomplete_files(ENHANCED, 8, WatchMode::Events);
}

#[test]
fn ge_single_slices_with_every_fault() {
    let o = replay(
        GE,
        3,
        WatchMode::Events,
        &[(2, FaultKind::Duplicate)],
        |_| {},
    );
    o.check_common(3);
    assert_eq!(o.volumes(), [1, 2, 3], "{}", o.picture());
    assert_eq!(o.duplicates(), [2], "{}", o.picture());

    let o = replay(GE, 3, WatchMode::Poll, &[(1, FaultKind::Swap)], |_| {});
    o.check_common(3);
    assert_eq!(o.volumes(), [1, 2, 3], "{}", o.picture());

    let o = replay(GE, 3, WatchMode::Events, &[(2, FaultKind::Drop)], |_| {});
    o.check_common(3);
    assert_eq!(o.missing(), [2], "{}", o.picture());

    let o = replay(
        GE,
        3,
        WatchMode::Poll,
        &[(1, FaultKind::TruncateLate), (2, FaultKind::Preallocate)],
        |_| {},
    );
    o.check_common(3);
    // 1's 32 files are cut in half and completed 2 TRs later: missing by then, late after.
    assert_eq!(o.volumes(), [2, 3], "{}", o.picture());
    assert_eq!(o.late(), [1], "{}", o.picture());

    let o = replay(
        GE,
        3,
        WatchMode::Events,
        &[(3, FaultKind::TruncateNever)],
        |_| {},
    );
    o.check_common(3);
    assert_eq!(o.volumes(), [1, 2], "{}", o.picture());
}
