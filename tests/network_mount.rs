//! Polling an export folder as SMB and NFS shares behave: files that appear by rename from
//! another folder (keeping their old mtime), whole-second file times, the folder disappearing
//! (an unmount) while the scanner goes on writing and coming back, and one file the OS will not
//! let us read. Each is reported once with the path; ingest keeps waiting and resumes delivery
//! by itself; every volume arrives in order with its values.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brainmclip::config::WatchMode;
use brainmclip::ingest::nifti_write::write_nifti;
use brainmclip::ingest::{EndReason, Ingest, IngestEvent};
use common::{collect, int16_spec, session, summary, volume_values};

const DIMS: [usize; 3] = [12, 10, 6];

fn name(i: u32) -> String {
    format!("001_000002_{i:06}.nii")
}

/// Writes volume `i` in `staging`, gives it `mtime` and renames it into `export` (what a
/// scanner's export to a share, or a copy tool, does).
fn rename_in(staging: &Path, export: &Path, i: u32, mtime: SystemTime) {
    let staged = staging.join(name(i));
    write_nifti(&staged, &int16_spec(&DIMS, 0.1), &volume_values(DIMS, i)).expect("write");
    let file = std::fs::File::options()
        .write(true)
        .open(&staged)
        .expect("open");
    file.set_modified(mtime).expect("set mtime");
    drop(file);
    std::fs::rename(&staged, export.join(name(i))).expect("rename in");
}

fn volumes(events: &[IngestEvent]) -> Vec<&brainmclip::ingest::Volume> {
    events
        .iter()
        .filter_map(|e| match e {
            IngestEvent::Volume(v) => Some(v),
            _ => None,
        })
        .collect()
}

fn warnings(events: &[IngestEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            IngestEvent::Warning { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn assert_values(events: &[IngestEvent], n: u32) {
    let got = volumes(events);
    assert_eq!(got.len(), n as usize, "{:?}", summary(events));
    for (v, i) in got.iter().zip(1..) {
        assert_eq!(v.index, i);
        assert_eq!(v.data, volume_values(DIMS, i), "volume {i}'s values");
    }
}

fn folders() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let export = dir.path().join("export");
    let staging = dir.path().join("staging");
    std::fs::create_dir(&export).expect("export");
    std::fs::create_dir(&staging).expect("staging");
    (dir, export, staging)
}

#[test]
fn files_renamed_in_from_another_folder_with_old_mtimes_are_read_once_complete() {
    let (_dir, export, staging) = folders();
    let config = session(&export, WatchMode::Poll, 0.1, 6);
    let ingest = Ingest::start(&config).expect("start");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600) + Duration::from_nanos(123);
    for i in 1..=6 {
        rename_in(&staging, &export, i, an_hour_ago);
        std::thread::sleep(Duration::from_millis(100));
    }
    let events = collect(&ingest, Duration::from_secs(20));
    assert_eq!(
        summary(&events),
        ["v1", "v2", "v3", "v4", "v5", "v6", "end"]
    );
    assert_values(&events, 6);
}

#[test]
fn whole_second_file_times_are_reported_once_and_each_file_waits_for_their_resolution() {
    let (_dir, export, staging) = folders();
    let config = session(&export, WatchMode::Poll, 0.2, 4);
    let ingest = Ingest::start(&config).expect("start");
    // A share that keeps 2 s times (FAT, old SMB): an even whole second.
    let coarse = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for i in 1..=4 {
        rename_in(&staging, &export, i, coarse);
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = collect(&ingest, Duration::from_secs(30));
    assert_eq!(summary(&events), ["w", "v1", "v2", "v3", "v4", "end"]);
    assert_values(&events, 4);
    let warned = warnings(&events);
    assert!(warned[0].contains(&name(1)), "{warned:?}");
    assert!(warned[0].contains("whole-second resolution"), "{warned:?}");
    assert!(warned[0].contains("unchanged for 2 s"), "{warned:?}");
    // Each waited the resolution from when it was first seen, not the 50 ms window.
    for v in volumes(&events) {
        let waited = v.read_ns.saturating_sub(v.seen_ns);
        assert!(
            waited >= 2_000_000_000,
            "volume {} read after {waited} ns",
            v.index
        );
    }
}

#[test]
fn an_export_folder_that_disappears_and_comes_back_loses_nothing_and_ends_nothing() {
    let (dir, export, staging) = folders();
    let mut config = session(&export, WatchMode::Poll, 0.1, 8);
    // Without the outage handling, 0.5 s of quiet would end the run and the deadlines would
    // declare volumes 4 to 6 missing.
    config.ingest.quiet_trs = 5.0;
    let ingest = Ingest::start(&config).expect("start");
    let now = SystemTime::now;
    for i in 1..=3 {
        rename_in(&staging, &export, i, now());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The share is unmounted: our path is gone while the scanner goes on writing to it.
    let away = dir.path().join("export-on-the-server");
    std::fs::rename(&export, &away).expect("unmount");
    for i in 4..=6 {
        rename_in(&staging, &away, i, now());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1200));
    std::fs::rename(&away, &export).expect("mount again");
    for i in 7..=8 {
        std::thread::sleep(Duration::from_millis(100));
        rename_in(&staging, &export, i, now());
    }
    let events = collect(&ingest, Duration::from_secs(20));
    let picture: Vec<String> = summary(&events).into_iter().filter(|s| s != "w").collect();
    assert_eq!(
        picture,
        ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "end"]
    );
    assert_values(&events, 8);
    let warned = warnings(&events);
    assert_eq!(warned.len(), 2, "one warning each way: {warned:?}");
    assert!(warned[0].contains("cannot list") && warned[0].contains("out of reach"));
    assert!(
        warned[0].contains(&export.display().to_string()),
        "{warned:?}"
    );
    assert!(warned[1].contains("reachable again after"), "{warned:?}");
    match events.last() {
        Some(IngestEvent::RunEnded { reason, .. }) => assert_eq!(*reason, EndReason::AllVolumes),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_file_we_may_not_read_is_reported_once_and_read_when_its_permission_is_fixed() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, export, staging) = folders();
    let mut config = session(&export, WatchMode::Poll, 0.1, 5);
    // Room for the operator's chmod before volume 3 would count as missing.
    config.ingest.deadline_tr = 20.0;
    let ingest = Ingest::start(&config).expect("start");
    for i in 1..=5 {
        let staged = staging.join(name(i));
        write_nifti(&staged, &int16_spec(&DIMS, 0.1), &volume_values(DIMS, i)).expect("write");
        if i == 3 {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o000))
                .expect("chmod");
            if std::fs::File::open(&staged).is_ok() {
                // Root (or CAP_DAC_OVERRIDE) reads it anyway: nothing to test here.
                eprintln!("skipped: this process may read a mode-000 file (running as root)");
                return;
            }
        }
        std::fs::rename(&staged, export.join(name(i))).expect("rename in");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let denied = export.join(name(3));
    std::fs::set_permissions(&denied, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let events = collect(&ingest, Duration::from_secs(20));
    let picture: Vec<String> = summary(&events).into_iter().filter(|s| s != "w").collect();
    assert_eq!(picture, ["v1", "v2", "v3", "v4", "v5", "end"]);
    assert_values(&events, 5);
    let warned = warnings(&events);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains(&name(3)) && warned[0].contains("ermission denied"));
}
