//! The scanner emulator against the reader: every fault kind, with inotify events and with
//! polling, at a TR of 100 ms. Checked against the replay's manifest: every volume read equals
//! the source bit for bit, every drop is `Missing` by its deadline, swaps come out in order,
//! duplicates are ignored, and an incomplete gzip is never decoded as a volume.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use brainmclip::config::WatchMode;
use brainmclip::ingest::nifti_write::write_nifti;
use brainmclip::ingest::replay::{
    run_replay, FaultKind, Manifest, Op, OutFormat, ReplayOptions, WriteMode,
};
use brainmclip::ingest::{Ingest, IngestEvent, RunReader};
use common::{collect_timed, int16_spec, session, summary, volume_values};

const TR_S: f64 = 0.1;
const N: usize = 14;
const DIMS: [usize; 3] = [24, 20, 12];

/// A 4-D int16 run with a scaling factor, so conversion is exercised too.
fn make_source(dir: &Path) -> (std::path::PathBuf, Vec<Vec<f32>>) {
    let mut spec = int16_spec(&[DIMS[0], DIMS[1], DIMS[2], N], TR_S as f32);
    spec.scaling = Some((0.5, 20.0));
    let values: Vec<f32> = (0..N as u32)
        .flat_map(|t| volume_values(DIMS, t))
        .map(|v| v * 0.5 + 20.0)
        .collect();
    let path = dir.join("run_bold.nii.gz");
    write_nifti(&path, &spec, &values).unwrap();
    let mut reader = RunReader::open(&path, 1 << 20).unwrap();
    let mut volumes = Vec::new();
    while let Some(v) = reader.next_volume() {
        volumes.push(v.unwrap().0);
    }
    (path, volumes)
}

struct Outcome {
    manifest: Manifest,
    events: Vec<(IngestEvent, u64)>,
    source: Vec<Vec<f32>>,
}

fn replay_into_ingest(
    watch: WatchMode,
    faults: &[(u32, FaultKind)],
    configure: impl FnOnce(&mut ReplayOptions),
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (source_path, source) = make_source(dir.path());
    let export = dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    let config = session(&export, watch, TR_S, N as u32);
    let ingest = Ingest::start(&config).unwrap();

    let mut options = ReplayOptions::new(&source_path, &export);
    options.manifest = Some(dir.path().join("manifest.json"));
    options.format = OutFormat::NiiGz;
    options.faults_at = faults.iter().copied().collect::<BTreeMap<_, _>>();
    configure(&mut options);
    let writer = std::thread::spawn(move || run_replay(&options).unwrap());
    let events = collect_timed(&ingest, Duration::from_secs(30));
    let manifest = writer.join().unwrap();
    Outcome {
        manifest,
        events,
        source,
    }
}

impl Outcome {
    fn volumes(&self) -> Vec<u32> {
        self.events
            .iter()
            .filter_map(|(e, _)| {
                if let IngestEvent::Volume(v) = e {
                    Some(v.index)
                } else {
                    None
                }
            })
            .collect()
    }

    fn late(&self) -> Vec<u32> {
        self.events
            .iter()
            .filter_map(|(e, _)| {
                if let IngestEvent::Late(v) = e {
                    Some(v.index)
                } else {
                    None
                }
            })
            .collect()
    }

    fn missing(&self) -> Vec<u32> {
        self.events
            .iter()
            .filter_map(|(e, _)| {
                if let IngestEvent::Missing { index, .. } = e {
                    Some(*index)
                } else {
                    None
                }
            })
            .collect()
    }

    fn duplicates(&self) -> Vec<u32> {
        self.events
            .iter()
            .filter_map(|(e, _)| {
                if let IngestEvent::Duplicate { index, .. } = e {
                    Some(*index)
                } else {
                    None
                }
            })
            .collect()
    }

    fn picture(&self) -> String {
        let events: Vec<IngestEvent> = self.events.iter().map(|(e, _)| e.clone()).collect();
        summary(&events).join(" ")
    }

    /// Checks that hold under every fault.
    fn check_common(&self) {
        let picture = self.picture();
        // In-order volumes come out strictly increasing, each index once.
        let v = self.volumes();
        assert!(v.windows(2).all(|w| w[0] < w[1]), "out of order: {picture}");
        // Every delivered volume (in order or late) equals the source voxel for voxel.
        for (e, _) in &self.events {
            if let IngestEvent::Volume(vol) | IngestEvent::Late(vol) = e {
                let expected = &self.source[vol.index as usize - 1];
                assert!(
                    vol.data.len() == expected.len()
                        && vol
                            .data
                            .iter()
                            .zip(expected)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "volume {} differs from the source",
                    vol.index
                );
                assert_eq!(vol.non_finite, 0);
                assert!(vol.read_ns >= vol.seen_ns);
            }
        }
        // Every index is accounted for exactly once in order: volume, missing or rejected.
        let mut in_order: Vec<u32> = self
            .events
            .iter()
            .filter_map(|(e, _)| match e {
                IngestEvent::Volume(v) => Some(v.index),
                IngestEvent::Missing { index, .. } => Some(*index),
                IngestEvent::Rejected { index: Some(i), .. } => Some(*i),
                _ => None,
            })
            .collect();
        in_order.sort();
        in_order.dedup();
        assert_eq!(in_order, (1..=N as u32).collect::<Vec<_>>(), "{picture}");
        assert!(matches!(
            self.events.last(),
            Some((IngestEvent::RunEnded { .. }, _))
        ));
    }

    /// When the manifest says the write of `index` closed.
    fn closed_ns(&self, index: u32) -> u64 {
        self.manifest
            .actions
            .iter()
            .find(|a| a.index == index)
            .map(|a| a.close_ns)
            .unwrap()
    }
}

/// How long detection may take in each mode (see the benchmark for measured figures).
fn detection_budget_ms(watch: WatchMode) -> f64 {
    match watch {
        WatchMode::Events => 15.0,
        _ => 20.0 + 50.0 + 15.0, // poll interval + stability window + read
    }
}

fn drops(watch: WatchMode) {
    let o = replay_into_ingest(
        watch,
        &[
            (4, FaultKind::Drop),
            (9, FaultKind::Drop),
            (10, FaultKind::Drop),
        ],
        |_| {},
    );
    o.check_common();
    assert_eq!(o.missing(), [4, 9, 10], "{}", o.picture());
    assert_eq!(o.volumes().len(), N - 3);
    assert!(o.late().is_empty());
    // Missing by the deadline: 1.5 TR after the previous volume's decode, which itself is at most
    // the detection budget after its file closed; consecutive drops one TR apart.
    for (index, previous, extra_trs) in [(4u32, 3u32, 0.0), (9, 8, 0.0), (10, 8, 1.0)] {
        let received = o
            .events
            .iter()
            .find_map(|(e, t)| {
                matches!(e, IngestEvent::Missing { index: i, .. } if *i == index).then_some(*t)
            })
            .unwrap();
        let after_ms = (received - o.closed_ns(previous)) as f64 / 1e6;
        let budget = (1.5 + extra_trs) * TR_S * 1e3 + detection_budget_ms(watch) + 10.0;
        assert!(
            after_ms <= budget,
            "missing {index} reported {after_ms:.1} ms after {previous} closed (budget {budget})"
        );
        assert!(
            after_ms >= (1.5 + extra_trs) * TR_S * 1e3 - 1.0,
            "missing {index} too early: {after_ms:.1} ms"
        );
    }
}

fn swaps(watch: WatchMode) {
    let o = replay_into_ingest(watch, &[(3, FaultKind::Swap), (8, FaultKind::Swap)], |_| {});
    o.check_common();
    // The files really were written out of order...
    let order: Vec<u32> = o.manifest.actions.iter().map(|a| a.index).collect();
    assert!(
        order.windows(2).any(|w| w == [4, 3]) && order.windows(2).any(|w| w == [9, 8]),
        "{order:?}"
    );
    // ...and came out in order, none missing.
    assert_eq!(
        o.volumes(),
        (1..=N as u32).collect::<Vec<_>>(),
        "{}",
        o.picture()
    );
}

fn duplicates(watch: WatchMode) {
    let o = replay_into_ingest(
        watch,
        &[(2, FaultKind::Duplicate), (7, FaultKind::Duplicate)],
        |_| {},
    );
    o.check_common();
    assert_eq!(
        o.manifest
            .actions
            .iter()
            .filter(|a| a.op == Op::Rewrite)
            .count(),
        2
    );
    assert_eq!(
        o.volumes(),
        (1..=N as u32).collect::<Vec<_>>(),
        "{}",
        o.picture()
    );
    assert_eq!(o.duplicates(), [2, 7], "{}", o.picture());
}

fn preallocated(watch: WatchMode) {
    let o = replay_into_ingest(
        watch,
        &[(3, FaultKind::Preallocate), (6, FaultKind::Preallocate)],
        |_| {},
    );
    o.check_common();
    // Zero-filled files at full size were never taken for volumes; the filled ones were read.
    assert_eq!(
        o.volumes(),
        (1..=N as u32).collect::<Vec<_>>(),
        "{}",
        o.picture()
    );
}

fn truncated_gzip(watch: WatchMode) {
    let o = replay_into_ingest(
        watch,
        &[(4, FaultKind::TruncateLate), (8, FaultKind::TruncateNever)],
        |_| {},
    );
    o.check_common();
    let p = o.picture();
    // Never decoded while incomplete: 4 comes only late (after completion), 8 never.
    assert!(
        !o.volumes().contains(&4) && !o.volumes().contains(&8),
        "{p}"
    );
    assert_eq!(o.late(), [4], "{p}");
    let completed = o
        .manifest
        .actions
        .iter()
        .find(|a| a.index == 4 && a.op == Op::Complete)
        .unwrap();
    let late_at = o
        .events
        .iter()
        .find_map(|(e, t)| matches!(e, IngestEvent::Late(_)).then_some(*t))
        .unwrap();
    assert!(
        late_at >= completed.close_ns,
        "late volume delivered before its file was complete"
    );
    assert!(
        !o.late().contains(&8) && o.manifest.volumes[7].fault == Some(FaultKind::TruncateNever)
    );
}

fn jitter_and_chunked_writes(watch: WatchMode) {
    let o = replay_into_ingest(watch, &[(5, FaultKind::Drop)], |r| {
        r.jitter_ms = 20.0;
        r.seed = 11;
        r.write = WriteMode::Chunked {
            chunk_bytes: 2048,
            pause: Duration::from_millis(1),
        };
    });
    o.check_common();
    assert_eq!(o.missing(), [5], "{}", o.picture());
    assert_eq!(o.volumes().len(), N - 1);
}

macro_rules! both_modes {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[test]
            fn events() {
                super::$name(WatchMode::Events);
            }
            #[test]
            fn polling() {
                super::$name(WatchMode::Poll);
            }
        }
    };
}

both_modes!(drops);
both_modes!(swaps);
both_modes!(duplicates);
both_modes!(preallocated);
both_modes!(truncated_gzip);
both_modes!(jitter_and_chunked_writes);

#[test]
fn auto_mode_with_seeded_random_faults_still_accounts_for_every_volume() {
    let o = replay_into_ingest(WatchMode::Auto, &[], |r| {
        r.seed = 5;
        r.rates = vec![
            (FaultKind::Drop, 0.1),
            (FaultKind::Swap, 0.1),
            (FaultKind::Duplicate, 0.1),
        ];
        r.format = OutFormat::Nii;
    });
    o.check_common();
    let dropped: Vec<u32> = o
        .manifest
        .volumes
        .iter()
        .filter(|v| v.fault == Some(FaultKind::Drop))
        .map(|v| v.index)
        .collect();
    assert_eq!(o.missing(), dropped, "{}", o.picture());
}

#[test]
fn a_relative_non_canonical_dir_gives_no_spurious_duplicates_in_auto_mode() {
    // Regression: notify reports absolute paths while listings used the configured spelling, so
    // the same file was tracked twice and every volume came out again as a duplicate.
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    std::fs::create_dir(&export).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let relative = std::path::PathBuf::from(format!(
        "{up}{}",
        dir.path()
            .join("sub/../export")
            .display()
            .to_string()
            .trim_start_matches('/')
    ));
    assert!(relative.is_relative());
    let config = session(&relative, WatchMode::Auto, TR_S, 4);
    let ingest = Ingest::start(&config).unwrap();
    for i in 1..=4u32 {
        let values = volume_values(DIMS, i);
        write_nifti(
            &export.join(format!("vol_{i:04}.nii")),
            &int16_spec(&DIMS, TR_S as f32),
            &values,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give the polling safety net time to look at every file again.
    std::thread::sleep(Duration::from_millis(200));
    let events = collect_timed(&ingest, Duration::from_secs(10));
    let picture: Vec<IngestEvent> = events.into_iter().map(|(e, _)| e).collect();
    assert_eq!(summary(&picture), ["v1", "v2", "v3", "v4", "end"]);
}
