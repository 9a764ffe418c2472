//! `run --resume`: the daemon is killed (SIGKILL) at random points while a scanner emulator
//! writes a run at TR pace, and continued with `--resume` each time. The parts' logs together
//! hold every volume exactly once and every trial's sample exactly once, each with the values
//! an uninterrupted run of the same data gives; each part links to the one before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brainmclip::ingest::replay::{run_replay, ReplayOptions};
use rand::{Rng, SeedableRng};

const VOLUMES: u32 = 60;
const TR_S: f64 = 1.5;
/// A volume every 80 ms.
const SPEED: f64 = TR_S / 0.08;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brainmclip"))
}

/// Simulates the run and writes a session file watching `export`, logging to `out`.
fn setup(d: &Path) -> PathBuf {
    let sim_toml = d.join("sim.toml");
    std::fs::write(
        &sim_toml,
        format!(
            "[simulate]\nvolumes_per_run = {VOLUMES}\ntrain_runs = 1\ntest_runs = 0\n\
             image_size = 32\n"
        ),
    )
    .expect("sim.toml");
    let out = bin()
        .args(["simulate", "--out"])
        .arg(d.join("bids"))
        .args(["--seed", "17", "--config"])
        .arg(&sim_toml)
        .output()
        .expect("simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = d.join("session.toml");
    std::fs::write(
        &session,
        format!(
            "[session]\ntr = {TR_S}\nvolumes = {VOLUMES}\n\
             [ingest]\ndir = \"export\"\npoll_interval_ms = 20\ndeadline_tr = 4.0\n\
             [preprocess]\ndummy_scans = 4\n\
             labels = \"bids/sub-01/anat/sub-01_desc-visual_dseg.nii.gz\"\n\
             label_table = \"bids/sub-01/anat/sub-01_desc-visual_dseg.tsv\"\n\
             events = \"bids/sub-01/func/sub-01_task-images_run-01_events.tsv\"\n\
             [feedback]\nenabled = false\n[output]\ndir = \"out\"\n"
        ),
    )
    .expect("session.toml");
    std::fs::create_dir_all(d.join("export")).expect("export");
    session
}

fn bold(d: &Path) -> PathBuf {
    d.join("bids/sub-01/func/sub-01_task-images_run-01_bold.nii.gz")
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole JSON line"))
        .collect()
}

/// The record without what differs between runs of the same data (times, paths, queues).
fn values(record: &serde_json::Value) -> serde_json::Value {
    let mut r = record.clone();
    if let Some(map) = r.as_object_mut() {
        map.retain(|k, _| !k.ends_with("_ns") && k != "path" && k != "queued");
    }
    r
}

/// Every record of `kind` in the logs, keyed by `key`, with how often each key was logged.
fn by_key(
    logs: &[Vec<serde_json::Value>],
    kind: &str,
    key: &str,
) -> (BTreeMap<u64, serde_json::Value>, BTreeMap<u64, usize>) {
    let mut found = BTreeMap::new();
    let mut count = BTreeMap::new();
    for r in logs.iter().flatten().filter(|r| r["event"] == kind) {
        let k = r[key].as_u64().expect("a key");
        *count.entry(k).or_insert(0) += 1;
        found.insert(k, values(r));
    }
    (found, count)
}

#[cfg(unix)]
#[test]
fn a_run_killed_at_random_points_and_resumed_logs_every_volume_once_with_its_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let session = setup(d);

    // The reference: the same data in one uninterrupted run.
    let reference = bin()
        .args(["run", "--config"])
        .arg(&session)
        .arg("--replay")
        .arg(bold(d))
        .args(["--speed", "max", "--dir"])
        .arg(d.join("export-reference"))
        .output()
        .expect("reference run");
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let reference_log = records(&d.join("out/events.jsonl"));
    std::fs::rename(d.join("out"), d.join("out-reference")).expect("keep the reference");

    // The scanner writes at TR pace whatever happens to the daemon.
    let mut replay = ReplayOptions::new(bold(d), d.join("export"));
    replay.speed = SPEED;
    replay.tr_s = Some(TR_S);
    let scanner = std::thread::spawn(move || run_replay(&replay));

    let seed: u64 = std::env::var("RESUME_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let start = |resume: bool, part: usize| {
        let mut c = bin();
        c.args(["run", "--config"]).arg(&session);
        if resume {
            c.arg("--resume").arg(d.join("out"));
        }
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join(format!("part-{part}.stderr"))).expect("log"))
            .spawn()
            .expect("start the daemon")
    };
    let began = Instant::now();
    let mut kills = Vec::new();
    for part in 1..=3 {
        let mut daemon = start(part > 1, part);
        let after = Duration::from_millis(rng.random_range(400..1300));
        std::thread::sleep(after);
        daemon.kill().expect("SIGKILL");
        daemon.wait().expect("reaped");
        kills.push(began.elapsed());
    }
    let last = start(true, 4).wait_with_output().expect("the last part");
    assert!(last.status.success(), "seed {seed}, kills at {kills:?}");
    scanner.join().expect("scanner").expect("replay");

    // Four parts, each finished under its final name and linked to the one before.
    let parts: Vec<PathBuf> = [
        "events.jsonl",
        "events-2.jsonl",
        "events-3.jsonl",
        "events-4.jsonl",
    ]
    .iter()
    .map(|n| d.join("out").join(n))
    .collect();
    let logs: Vec<Vec<serde_json::Value>> = parts.iter().map(|p| records(p)).collect();
    for (i, log) in logs.iter().enumerate().skip(1) {
        let started = log
            .iter()
            .find(|r| r["event"] == "started")
            .expect("started");
        assert_eq!(
            started["resumes"]["log"].as_str().map(PathBuf::from),
            Some(parts[i - 1].clone()),
            "part {}",
            i + 1
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.join("out"))
        .expect("out")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Every volume exactly once, with the uninterrupted run's values; every sample likewise.
    let reference = [reference_log];
    for (kind, key) in [("volume", "index"), ("dummy", "index"), ("sample", "trial")] {
        let (want, _) = by_key(&reference, kind, key);
        let (got, counts) = by_key(&logs, kind, key);
        let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
        assert!(
            repeated.is_empty(),
            "{kind}s logged twice: {repeated:?} (seed {seed})"
        );
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{kind}s (seed {seed}, kills at {kills:?})"
        );
        for (k, w) in &want {
            assert_eq!(&got[k], w, "{kind} {k} (seed {seed})");
        }
    }
    let (volumes, _) = by_key(&logs, "volume", "index");
    assert_eq!(volumes.len(), VOLUMES as usize - 4);
    // The kills fell mid-run: the first part logged volumes, the last rebuilt from earlier ones.
    let per_part: Vec<usize> = logs
        .iter()
        .map(|l| l.iter().filter(|r| r["event"] == "volume").count())
        .collect();
    eprintln!("seed {seed}: kills at {kills:?}, volumes logged per part {per_part:?}");
    assert!(per_part[0] > 0, "{per_part:?}");
    let ended = logs[3].last().expect("a record");
    assert_eq!(ended["event"], "run_ended");
    assert!(
        ended["rebuilt_volumes"].as_u64().expect("rebuilt") > 0,
        "{ended}"
    );
}
