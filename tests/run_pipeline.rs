//! `brainmclip run` end to end on a simulated session: simulate, replay the run into an export
//! directory in-process, preprocess, assemble trials; every volume accounted for in the log,
//! motion estimates against the simulator's truth, one sample per trial.

use std::path::Path;
use std::process::Command;

use nifti::NiftiObject;

use brainmclip::geometry::rotation;
use brainmclip::preprocess::stage::{PreprocessEvent, PreprocessStage};

fn relative(p: &[f32; 6], reference: &[f32; 6]) -> [f32; 6] {
    let (r, r0) = (rotation(p), rotation(reference));
    let rel: [[f32; 3]; 3] =
        std::array::from_fn(|a| std::array::from_fn(|b| (0..3).map(|k| r[a][k] * r0[b][k]).sum()));
    let t: [f32; 3] =
        std::array::from_fn(|d| p[d] - (0..3).map(|k| rel[d][k] * reference[k]).sum::<f32>());
    [
        t[0],
        t[1],
        t[2],
        rel[2][1].atan2(rel[2][2]).to_degrees(),
        (-rel[2][0]).asin().to_degrees(),
        rel[1][0].atan2(rel[0][0]).to_degrees(),
    ]
}

fn tsv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

/// Simulates a one-run session (32-pixel images) into `d/bids` and writes `d/session.toml` for a
/// run on it: dummy scans, masks, optionally the events file, and the given `[feedback]` table.
fn simulated_session(
    d: &Path,
    volumes: u32,
    seed: u64,
    extra_sim: &str,
    events: bool,
    feedback: &str,
) -> std::path::PathBuf {
    let sim_toml = d.join("sim.toml");
    std::fs::write(
        &sim_toml,
        format!("[simulate]\nvolumes_per_run = {volumes}\ntrain_runs = 1\ntest_runs = 0\nimage_size = 32\n{extra_sim}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .args([
            "simulate",
            "--out",
            d.join("bids").to_str().unwrap(),
            "--seed",
            &seed.to_string(),
            "--config",
            sim_toml.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = if events {
        "events = \"bids/sub-01/func/sub-01_task-images_run-01_events.tsv\"\n"
    } else {
        ""
    };
    let session = d.join("session.toml");
    std::fs::write(
        &session,
        format!(
            "[session]\ntr = 1.5\nvolumes = {volumes}\n[ingest]\ndir = \"export\"\n[preprocess]\ndummy_scans = 4\n\
             labels = \"bids/sub-01/anat/sub-01_desc-visual_dseg.nii.gz\"\n\
             label_table = \"bids/sub-01/anat/sub-01_desc-visual_dseg.tsv\"\n{events}\
             [feedback]\n{feedback}\n[output]\ndir = \"out\"\n"
        ),
    )
    .unwrap();
    session
}

/// The `brainmclip run` command on the session, replaying its run at `speed`.
fn replay_command(d: &Path, session: &Path, speed: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brainmclip"));
    c.args([
        "run",
        "--config",
        session.to_str().unwrap(),
        "--replay",
        d.join("bids/sub-01/func/sub-01_task-images_run-01_bold.nii.gz")
            .to_str()
            .unwrap(),
        "--speed",
        speed,
    ]);
    c
}

fn run_replay(d: &Path, session: &Path, speed: &str) -> std::process::Output {
    replay_command(d, session, speed).output().unwrap()
}

#[test]
fn run_replays_a_simulated_session_through_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let session = simulated_session(
        d,
        80,
        4,
        "motion_step = 0.05\n",
        true,
        "address = \"127.0.0.1:0\"",
    );
    let out = run_replay(d, &session, "max");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        said,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("80 delivered, 0 late, 0 missing, 0 rejected"),
        "{said}"
    );

    let events: Vec<serde_json::Value> = std::fs::read_to_string(d.join("out/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("dummy").len(), 4);
    let volumes = of("volume");
    assert_eq!(volumes.len(), 76);
    let indices: Vec<u64> = volumes
        .iter()
        .map(|v| v["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, (5..=80).collect::<Vec<_>>());
    for v in &volumes {
        let (seen, read, pre) = (
            v["seen_ns"].as_u64().unwrap(),
            v["read_ns"].as_u64().unwrap(),
            v["preprocessed_ns"].as_u64().unwrap(),
        );
        assert!(seen <= read && read <= pre, "telemetry out of order: {v}");
    }
    // The console's figures follow each volume as a `monitor` record: usable counts at
    // 0.2/0.3/0.5 mm equal the counts of the records' own FD so far (the first volume, without
    // FD, counts), DVARS from the second monitored volume, standardised DVARS from the fourth,
    // tSNR per mask from the third, and the flags exactly where FD or std DVARS is over its
    // limit.
    let monitors = of("monitor");
    assert_eq!(monitors.len(), volumes.len());
    for (k, e) in events.iter().enumerate() {
        if e["event"] == "volume" {
            assert_eq!(events[k + 1]["event"], "monitor", "{e}");
            assert_eq!(events[k + 1]["index"], e["index"]);
        }
    }
    let mut fds = Vec::new();
    for (k, (v, m)) in volumes.iter().zip(&monitors).enumerate() {
        fds.push(v["fd"].as_f64());
        assert_eq!(m["volumes"].as_u64(), Some(k as u64 + 1), "{m}");
        assert_eq!(m["fd_mm"].as_f64(), v["fd"].as_f64(), "{m}");
        assert_eq!(m["dvars"].is_number(), k >= 1, "{m}");
        assert_eq!(m["std_dvars"].is_number(), k >= 3, "{m}");
        let fd_over = v["fd"].as_f64().is_some_and(|fd| fd > 0.5 + 1e-7);
        assert_eq!(m["fd_over_limit"].as_bool(), Some(fd_over), "{m}");
        let spike = m["std_dvars"].as_f64().is_some_and(|s| s > 1.5 + 1e-6);
        assert_eq!(m["dvars_spike"].as_bool(), Some(spike), "{m}");
        let tsnr = m["tsnr"].as_array().unwrap();
        let groups: Vec<&str> = tsnr.iter().map(|t| t["group"].as_str().unwrap()).collect();
        if k >= 2 {
            assert_eq!(groups, ["detail", "semantic"], "{m}");
            // A simulated BOLD baseline of a few hundred with ~1 % noise: tSNR in the tens.
            assert!(
                tsnr.iter().all(|t| t["median"].as_f64().unwrap() > 10.0),
                "{m}"
            );
        } else {
            assert!(groups.is_empty(), "{m}");
        }
        let thresholds = m["thresholds"].as_array().unwrap();
        assert_eq!(thresholds.len(), 3);
        for t in thresholds {
            let limit = t["threshold_mm"].as_f64().unwrap();
            let usable = fds
                .iter()
                .filter(|fd| fd.is_none_or(|fd| fd <= limit + 1e-7))
                .count() as u64;
            assert_eq!(t["volumes"].as_u64(), Some(usable), "{limit} mm at {m}");
            let percent = 100.0 * usable as f64 / (k + 1) as f64;
            assert!((t["percent"].as_f64().unwrap() - percent).abs() < 1e-9);
        }
    }
    let trials = tsv(&d.join("bids/sub-01/func/sub-01_task-images_run-01_events.tsv")).len();
    let samples = of("sample");
    assert_eq!(samples.len(), trials);
    assert!(samples
        .iter()
        .all(|s| s["missing"] == 0 && s["detail_voxels"].as_u64().unwrap() > 1000));

    // Motion in the QA table against the simulator's truth (reference: the first volume after
    // the dummy scans, index 5 = acquisition 4).
    let truth: Vec<[f32; 6]> =
        tsv(&d.join("bids/derivatives/sim/sub-01/sub-01_task-images_run-01_motion.tsv"))
            .iter()
            .map(|r| std::array::from_fn(|i| r[i + 1].parse().unwrap()))
            .collect();
    let header = std::fs::read_to_string(d.join("out/qa.tsv")).unwrap();
    let header: Vec<&str> = header.lines().next().unwrap().split('\t').collect();
    assert_eq!(
        header[..11],
        [
            "index",
            "trans_x",
            "trans_y",
            "trans_z",
            "rot_x",
            "rot_y",
            "rot_z",
            "framewise_displacement",
            "dvars",
            "std_dvars",
            "global_signal"
        ],
        "fMRIPrep's confound names"
    );
    let qa = tsv(&d.join("out/qa.tsv"));
    assert_eq!(qa.len(), 76);
    // The QA rows carry the monitor records' figures.
    for (row, m) in qa.iter().zip(&monitors) {
        let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap()].as_str();
        match m["dvars"].as_f64() {
            Some(dvars) => assert!((cell("dvars").parse::<f64>().unwrap() - dvars).abs() < 1e-3),
            None => assert_eq!(cell("dvars"), "n/a"),
        }
        let flag = |b: bool| if b { "1" } else { "0" };
        assert_eq!(cell("fd_over_limit"), flag(m["fd_over_limit"] == true));
        assert_eq!(cell("dvars_spike"), flag(m["dvars_spike"] == true));
    }

    // At the end: the tSNR map on the volumes' grid, whose median over the detail mask equals
    // the last monitor record's (two accumulations of the same volumes), and the carpet, one
    // column per volume, rows grouped as the record says.
    let maps = of("quality_maps");
    assert_eq!(maps.len(), 1);
    let maps = maps[0];
    assert_eq!(maps["volumes"], 76);
    let tsnr = brainmclip::ingest::read_volume_file(
        Path::new(maps["tsnr_file"].as_str().unwrap()),
        1 << 28,
    )
    .unwrap();
    let anat = d.join("bids/sub-01/anat");
    let masks = brainmclip::preprocess::masks::Masks::load(
        &anat.join("sub-01_desc-visual_dseg.nii.gz"),
        &anat.join("sub-01_desc-visual_dseg.tsv"),
        &tsnr.header.geometry(),
        1e-3,
    )
    .unwrap();
    let in_detail: Vec<f32> = masks.detail.iter().map(|&i| tsnr.data[i]).collect();
    let median = brainmclip::preprocess::monitor::median(in_detail);
    let last = monitors.last().unwrap()["tsnr"][0]["median"]
        .as_f64()
        .unwrap();
    assert!(
        (f64::from(median) - last).abs() < 1e-3 * last,
        "map median {median} vs monitor {last}"
    );
    let carpet = nifti::ReaderOptions::new()
        .read_file(maps["carpet_file"].as_str().unwrap())
        .unwrap();
    let dims = carpet.header().dim;
    let rows: u64 = maps["carpet_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rows"].as_u64().unwrap())
        .sum();
    assert_eq!((dims[1] as u64, dims[4]), (rows, 76));
    assert!(rows > 500 && rows <= 2000, "{rows}");

    // `run` wrote the report beside the log: every section, no trials to show.
    assert!(said.contains("report: "), "{said}");
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    for id in [
        "summary",
        "motion",
        "fd",
        "dvars",
        "global-signal",
        "carpet",
        "tsnr",
        "latency",
        "decoding",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "no {id} section"
        );
    }
    assert!(html.contains("No trials were decoded"));
    assert!(html.contains("<td>volumes preprocessed</td><td>76</td>"));
    let over = monitors
        .iter()
        .filter(|m| m["fd_over_limit"] == true)
        .count();
    assert!(html.contains(&format!(
        "<td>volumes over the FD limit</td><td><span class=\"flag\">{over}</span></td>"
    )));

    // A crashed session: only a `.partial` log, its last line cut, no maps. The report still
    // comes, says what is missing, and counts the unreadable line.
    let crashed = d.join("crashed");
    std::fs::create_dir(&crashed).unwrap();
    let log = std::fs::read_to_string(d.join("out/events.jsonl")).unwrap();
    let cut = &log[..log.len() - 40];
    std::fs::write(crashed.join("events.jsonl.partial"), cut).unwrap();
    let report = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .args(["report", crashed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let html = std::fs::read_to_string(crashed.join("report.html")).unwrap();
    assert!(html.contains("n/a (the run did not end)"));
    assert!(html.contains("No carpet was written"));
    assert!(html.contains("1 unreadable log lines skipped"));
    // And a folder without a session says so, naming it.
    let empty = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .args(["report", d.join("bids").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!empty.status.success());
    let said = String::from_utf8_lossy(&empty.stderr);
    assert!(said.contains("bids: no session log"), "{said}");
    let (mut trans, mut rot) = (0.0f64, 0.0f64);
    for row in &qa {
        let index: usize = row[0].parse().unwrap();
        let mut estimate: Vec<f32> = row[1..7].iter().map(|v| v.parse().unwrap()).collect();
        // fMRIPrep's convention: rotations in radians.
        for r in &mut estimate[3..] {
            *r = r.to_degrees();
        }
        let expected = relative(&truth[index - 1], &truth[4]);
        for k in 0..3 {
            trans += ((estimate[k] - expected[k]) as f64).powi(2);
            rot += ((estimate[k + 3] - expected[k + 3]) as f64).powi(2);
        }
    }
    let n = 3.0 * qa.len() as f64;
    let (trans, rot) = ((trans / n).sqrt(), (rot / n).sqrt());
    assert!(
        trans < 0.1 && rot < 0.1,
        "motion RMS error {trans:.3} mm, {rot:.3} deg"
    );
}

/// MURFI-style golden regression: a fixed-seed session's per-trial outputs against stored
/// values. Refresh with `UPDATE_GOLDEN=1 cargo test --test run_pipeline golden` after a change
/// that is meant to alter the numbers, and say why in the commit.
#[test]
fn golden_per_trial_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let session = simulated_session(d, 60, 17, "", true, "address = \"127.0.0.1:0\"");
    let out = run_replay(d, &session, "20");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(d.join("out/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "sample")
        .map(|s| serde_json::json!({"trial": s["trial"], "volumes": s["volumes"], "mean_detail": s["mean_detail"], "mean_semantic": s["mean_semantic"]}))
        .collect();
    let golden_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/trials_seed17.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(
            &golden_path,
            serde_json::to_string_pretty(&samples).unwrap(),
        )
        .unwrap();
    }
    let golden: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
    assert_eq!(samples.len(), golden.len());
    for (got, want) in samples.iter().zip(&golden) {
        assert_eq!(got["trial"], want["trial"]);
        assert_eq!(got["volumes"], want["volumes"], "trial {}", want["trial"]);
        for key in ["mean_detail", "mean_semantic"] {
            let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
            assert!(
                (g - w).abs() < 1e-4,
                "trial {} {key}: {g} vs golden {w}",
                want["trial"]
            );
        }
    }
}

#[test]
fn a_feedback_client_receives_results_and_its_markers_become_trials() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A free port, chosen here so the client knows it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let session = simulated_session(
        d,
        60,
        3,
        "",
        false,
        &format!("address = \"127.0.0.1:{port}\""),
    );
    let mut child = replay_command(d, &session, "10")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stream = (0..200)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("the feedback server never accepted a connection");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // A live trial at 60 s into the run (the scanner's volume 41), from the stimulus computer;
    // its window (4.5-7.5 s) holds volumes 44-46.
    writer.write_all(b"{\"type\":\"marker\",\"onset_s\":60.0,\"trial_type\":\"live\",\"stimulus\":\"cue.png\"}\n").unwrap();
    let mut reader = BufReader::new(stream);
    let (mut acked, mut volumes, mut monitors, mut live_sample) = (false, 0, 0, None);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        line.clear();
        match record["type"].as_str().or(record["event"].as_str()) {
            Some("ack") => acked = true,
            Some("volume") => volumes += 1,
            // The console's figures reach the stimulus computer too, one per volume.
            Some("monitor") => monitors += 1,
            Some("sample") => live_sample = Some(record),
            Some("run_ended") => break,
            other => panic!("unexpected record {other:?}"),
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(acked, "the marker was not acknowledged");
    assert!(volumes >= 50, "{volumes} volume records");
    assert_eq!(monitors, volumes);
    let sample = live_sample.expect("no sample for the live trial");
    assert_eq!(sample["trial_type"], "live");
    assert_eq!(sample["stimulus"], "cue.png");
    assert_eq!(sample["volumes"], serde_json::json!([44, 45, 46]));
    assert!(sample["sample_ns"].as_u64().unwrap() > 1_600_000_000_000_000_000);
}

#[cfg(unix)]
#[test]
fn sigterm_ends_the_run_cleanly_with_the_log_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("export")).unwrap();
    let session = d.join("session.toml");
    std::fs::write(&session, "[session]\ntr = 1.0\n[ingest]\ndir = \"export\"\n[feedback]\nenabled = false\n[output]\ndir = \"out\"\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .args(["run", "--config", session.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains("run ended"));
    let log = std::fs::read_to_string(d.join("out/events.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "run_ended");
}

/// The recorder writes `events.jsonl.partial` and renames it when the run ends: a run killed
/// outright leaves only the partial file, every line in it whole; a clean end leaves only the
/// final name.
#[cfg(unix)]
#[test]
fn the_log_appears_under_its_final_name_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let session = simulated_session(d, 40, 5, "", false, "enabled = false");
    let spawn = |speed: &str| {
        replay_command(d, &session, speed)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Three volumes a second: killed after a few have been logged.
    let mut child = spawn("2");
    let partial = d.join("out/events.jsonl.partial");
    let lines = |p: &Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    for _ in 0..200 {
        if lines(&partial) >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(lines(&partial) >= 3, "nothing logged");
    assert!(
        !d.join("out/events.jsonl").exists(),
        "the final name exists mid-run"
    );
    child.kill().unwrap(); // SIGKILL: no clean shutdown
    child.wait().unwrap();
    assert!(!d.join("out/events.jsonl").exists());
    let log = std::fs::read_to_string(&partial).unwrap();
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a whole JSON line");
    }
    // The next run leaves the killed run's files alone and ends under the final names.
    std::fs::remove_dir_all(d.join("export")).unwrap();
    let out = spawn("max").wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(d.join("out/events-2.jsonl").exists());
    assert!(d.join("out/qa-2.tsv").exists());
    assert!(!d.join("out/events-2.jsonl.partial").exists());
    assert_eq!(std::fs::read_to_string(&partial).unwrap(), log);
}

/// Calibration preprocesses recorded runs with `PreprocessStage::offline`: the same stage as the live
/// path must give the same per-trial outputs as the live replay (the golden values).
#[test]
fn offline_preprocessing_equals_the_live_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let session = simulated_session(d, 60, 17, "", true, "address = \"127.0.0.1:0\"");
    let config = brainmclip::config::SessionConfig::load(&session).unwrap();
    let run = d.join("bids/sub-01/func/sub-01_task-images_run-01_bold.nii.gz");
    let stage = PreprocessStage::offline(&config, &run).unwrap();
    let mut samples = Vec::new();
    let mut volumes = 0;
    for event in stage.events().iter() {
        match event {
            PreprocessEvent::Sample(s) => samples.push(s),
            PreprocessEvent::Volume(_) => volumes += 1,
            PreprocessEvent::Ended { .. } => break,
            PreprocessEvent::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    assert_eq!(volumes, 56, "60 volumes less 4 dummies");
    let golden_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/trials_seed17.json");
    let golden: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
    assert_eq!(samples.len(), golden.len());
    for (got, want) in samples.iter().zip(&golden) {
        assert_eq!(got.trial, want["trial"].as_u64().unwrap());
        assert_eq!(serde_json::json!(got.volumes), want["volumes"]);
        for (g, key) in [
            (got.mean_detail, "mean_detail"),
            (got.mean_semantic, "mean_semantic"),
        ] {
            let w = want[key].as_f64().unwrap();
            assert!(
                (g as f64 - w).abs() < 1e-4,
                "trial {}: {key} {g} vs {w}",
                got.trial
            );
        }
    }
}
