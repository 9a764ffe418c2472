//! Ingest options beyond the fault matrix: files already present (processed or skipped), a
//! geometry reference file, the quiet-time end, and replay from a folder of 3-D volumes.

mod common;

use std::time::Duration;

use brainmclip::config::{ExistingFiles, WatchMode};
use brainmclip::ingest::nifti_write::write_nifti;
use brainmclip::ingest::replay::{run_replay, FaultKind, OutFormat, ReplayOptions};
use brainmclip::ingest::{EndReason, Ingest, IngestEvent};
use common::{collect, int16_spec, session, summary, volume_values};

const DIMS: [usize; 3] = [12, 10, 6];

fn write_volumes(dir: &std::path::Path, indices: std::ops::RangeInclusive<u32>) {
    for i in indices {
        let path = dir.join(format!("001_000002_{i:06}.nii"));
        write_nifti(&path, &int16_spec(&DIMS, 0.1), &volume_values(DIMS, i)).unwrap();
    }
}

#[test]
fn existing_files_are_processed_in_index_order() {
    let dir = tempfile::tempdir().unwrap();
    write_volumes(dir.path(), 1..=5);
    let config = session(dir.path(), WatchMode::Events, 0.1, 5);
    let ingest = Ingest::start(&config).unwrap();
    let events = collect(&ingest, Duration::from_secs(10));
    assert_eq!(summary(&events), ["v1", "v2", "v3", "v4", "v5", "end"]);
    // Siemens-style names: the last number is the index, and the data is that volume's.
    match &events[2] {
        IngestEvent::Volume(v) => assert_eq!(v.data, volume_values(DIMS, 3)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn existing_files_can_be_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_volumes(dir.path(), 1..=3);
    let mut config = session(dir.path(), WatchMode::Auto, 0.1, 6);
    config.ingest.existing = ExistingFiles::Skip;
    let ingest = Ingest::start(&config).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    write_volumes(dir.path(), 4..=6);
    let events = collect(&ingest, Duration::from_secs(10));
    assert_eq!(summary(&events), ["v4", "v5", "v6", "end"]);
}

#[test]
fn a_reference_file_sets_the_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    let reference = dir.path().join("reference.nii.gz");
    let mut shifted = int16_spec(&DIMS, 0.1);
    shifted.affine = Some([
        [3.0, 0.0, 0.0, 5.0],
        [0.0, 3.0, 0.0, 0.0],
        [0.0, 0.0, 3.5, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]);
    write_nifti(&reference, &shifted, &volume_values(DIMS, 0)).unwrap();
    let mut config = session(&export, WatchMode::Events, 0.1, 2);
    config.ingest.reference = Some(reference.clone());
    let ingest = Ingest::start(&config).unwrap();
    write_nifti(
        &export.join("v_0001.nii"),
        &shifted,
        &volume_values(DIMS, 1),
    )
    .unwrap();
    write_volumes(&export, 2..=2); // the default grid: its origin differs from the reference
    let events = collect(&ingest, Duration::from_secs(10));
    assert_eq!(summary(&events), ["v1", "r2", "end"]);
    match &events[1] {
        IngestEvent::Rejected { reason, .. } => {
            assert!(
                reason.contains("reference.nii.gz") && reason.contains("affine[0][3]"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A reference that cannot be read stops the start with its name.
    config.ingest.reference = Some(dir.path().join("nope.nii"));
    let err = Ingest::start(&config).err().unwrap().to_string();
    assert!(
        err.contains("ingest.reference") && err.contains("nope.nii"),
        "{err}"
    );
}

#[test]
fn an_unknown_length_run_ends_after_the_quiet_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = session(dir.path(), WatchMode::Events, 0.05, 0);
    config.ingest.quiet_trs = 4.0;
    let ingest = Ingest::start(&config).unwrap();
    write_volumes(dir.path(), 1..=2);
    let start = std::time::Instant::now();
    let events = collect(&ingest, Duration::from_secs(10));
    let elapsed = start.elapsed();
    let s = summary(&events);
    assert_eq!(&s[..2], ["v1", "v2"]);
    match events.last().unwrap() {
        IngestEvent::RunEnded {
            reason, last_index, ..
        } => {
            assert_eq!(*reason, EndReason::Quiet);
            assert_eq!(
                *last_index,
                Some(2),
                "Missing records after 2 were past the end of the scan"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(190),
        "ended after {elapsed:?}, before 4 quiet TRs"
    );
}

#[test]
fn a_missing_export_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = session(&dir.path().join("not-there"), WatchMode::Poll, 0.1, 1);
    let err = Ingest::start(&config).err().unwrap().to_string();
    assert!(
        err.contains("ingest.dir") && err.contains("not-there"),
        "{err}"
    );
}

#[test]
fn replay_from_a_folder_of_3d_volumes_including_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("recorded");
    std::fs::create_dir(&source).unwrap();
    write_volumes(&source, 1..=4);
    let export = dir.path().join("export");
    let config = session(&export, WatchMode::Events, 0.05, 4);
    std::fs::create_dir(&export).unwrap();
    let ingest = Ingest::start(&config).unwrap();
    let mut options = ReplayOptions::new(&source, &export);
    options.tr_s = Some(0.05);
    options.format = OutFormat::Nii;
    options.faults_at.insert(2, FaultKind::Swap);
    let manifest = run_replay(&options).unwrap();
    assert_eq!(manifest.n_volumes, 4);
    let events = collect(&ingest, Duration::from_secs(10));
    assert_eq!(summary(&events), ["v1", "v2", "v3", "v4", "end"]);
    for e in &events {
        if let IngestEvent::Volume(v) = e {
            assert_eq!(v.data, volume_values(DIMS, v.index), "volume {}", v.index);
        }
    }
    // A pair source replays to a single-file volume with the same values and scaling.
    let pair_dir = dir.path().join("pair");
    std::fs::create_dir(&pair_dir).unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nifti");
    std::fs::copy(fixtures.join("pair.hdr"), pair_dir.join("p_0001.hdr")).unwrap();
    std::fs::copy(fixtures.join("pair.img"), pair_dir.join("p_0001.img")).unwrap();
    let out = dir.path().join("pair_out");
    let mut options = ReplayOptions::new(&pair_dir, &out);
    options.tr_s = Some(0.01);
    run_replay(&options).unwrap();
    let original =
        brainmclip::ingest::read_volume_file(&pair_dir.join("p_0001.hdr"), 1 << 20).unwrap();
    let copy = brainmclip::ingest::read_volume_file(&out.join("vol_0001.nii.gz"), 1 << 20).unwrap();
    assert_eq!(copy.data, original.data);
    assert_eq!(copy.header.scaling, Some((1.5, 3.0)));
    assert_eq!(copy.header.geometry(), original.header.geometry());
}

#[cfg(target_os = "linux")]
#[test]
fn an_idle_polling_ingest_does_not_spin() {
    // Regression: with no watcher the signal channel disconnected and the timed wait returned at
    // once, so polling mode burned a whole core.
    fn cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap() // utime + stime
    }
    let dir = tempfile::tempdir().unwrap();
    let config = session(dir.path(), WatchMode::Poll, 1.0, 0);
    let ingest = Ingest::start(&config).unwrap();
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_ticks() - before; // clock ticks, usually 100 per second
    drop(ingest);
    assert!(used < 30, "{used} ticks of CPU in 1 s of idle polling");
}
