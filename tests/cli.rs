//! The binary as a user runs it: the README's commands, end to end.

mod common;

use std::path::Path;
use std::process::Command;

use brainmclip::config::SessionConfig;
use brainmclip::ingest::nifti_write::write_nifti;
use common::{int16_spec, volume_values};

fn brainmclip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn config_example_is_a_valid_session_file() {
    let out = brainmclip(&["config", "--example"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        SessionConfig::parse(&text, Path::new("stdout")).unwrap(),
        SessionConfig::default()
    );
    assert!(
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 20,
        "commented"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[ingest]\nwatch = \"auto\"\nstablity_ms = 80\n").unwrap();
    let out = brainmclip(&["config", "--check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad.toml") && err.contains("stablity_ms"),
        "{err}"
    );
}

#[test]
fn inspect_prints_the_header() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nifti/run4d.nii.gz");
    let out = brainmclip(&["inspect", fixture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "[8, 6, 4, 6] (6 volumes)",
        "TR           2.000 s",
        "int16",
        "value = 0.25 x stored + 100",
        "orientation  RAS",
        "tSNR         mean 24.07",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let out = brainmclip(&["inspect", "/nonexistent/x.nii"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.nii"));
}

#[test]
fn replay_then_run_records_every_volume() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dims = [10, 8, 6];
    let values: Vec<f32> = (0..8).flat_map(|t| volume_values(dims, t)).collect();
    let source = d.join("run.nii.gz");
    write_nifti(&source, &int16_spec(&[10, 8, 6, 8], 0.1), &values).unwrap();
    let export = d.join("export");
    let out = brainmclip(&[
        "replay",
        source.to_str().unwrap(),
        "--to",
        export.to_str().unwrap(),
        "--fault",
        "3:drop",
        "--fault",
        "5:duplicate",
        "--seed",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains("wrote 8 volumes") && said.contains("3:Drop"),
        "{said}"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(export.join("replay_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["volumes"].as_array().unwrap().len(), 8);
    assert_eq!(manifest["volumes"][2]["fault"], "drop");

    // The recorded files are already there: `run` processes them, in order, and ends on count.
    let session = d.join("session.toml");
    std::fs::write(
        &session,
        "[session]\ntr = 0.1\nvolumes = 8\n[ingest]\ndir = \"export\"\nwatch = \"poll\"\n[preprocess]\nmotion = \"off\"\n[feedback]\naddress = \"127.0.0.1:0\"\n[output]\ndir = \"out\"\n",
    )
    .unwrap();
    let out = brainmclip(&["run", "--config", session.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("7 delivered, 0 late, 1 missing"), "{said}");
    let log = std::fs::read_to_string(d.join("out/events.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}{}",
                e["event"].as_str().unwrap(),
                e["index"].as_u64().map_or(String::new(), |i| i.to_string())
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "volume1",
            "monitor1",
            "volume2",
            "monitor2",
            "missing3",
            "volume4",
            "monitor4",
            "volume5",
            "monitor5",
            "volume6",
            "monitor6",
            "volume7",
            "monitor7",
            "volume8",
            "monitor8",
            "quality_maps",
            "run_ended"
        ]
    );
    assert_eq!(events[1]["dims"], serde_json::json!([10, 8, 6]));
}

#[test]
fn simulate_writes_bids_and_exports_a_run_like_a_scanner() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let session = d.join("session.toml");
    std::fs::write(
        &session,
        "[simulate]\nvolumes_per_run = 40\ntrain_runs = 1\ntest_runs = 1\nimage_size = 32\n",
    )
    .unwrap();
    let out = brainmclip(&[
        "simulate",
        "--out",
        d.join("bids").to_str().unwrap(),
        "--seed",
        "2",
        "--config",
        session.to_str().unwrap(),
        "--export-to",
        d.join("export").to_str().unwrap(),
        "--export-run",
        "2",
        "--speed",
        "30",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains("2 runs") && said.contains("exported 40 volumes"),
        "{said}"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("export/replay_manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(manifest["source"]
        .as_str()
        .unwrap()
        .ends_with("run-02_bold.nii.gz"));
    assert_eq!(manifest["tr_s"], 1.5);
    assert!(d.join("export/vol_0040.nii.gz").exists());
    assert!(d
        .join("bids/sub-01/anat/sub-01_desc-visual_dseg.tsv")
        .exists());
    // A bad value in the section is named.
    std::fs::write(&session, "[simulate]\ntsnr = -3\n").unwrap();
    let out = brainmclip(&[
        "simulate",
        "--out",
        d.join("x").to_str().unwrap(),
        "--config",
        session.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("session.toml") && err.contains("simulate.tsnr"),
        "{err}"
    );
}

#[test]
fn a_calibration_made_with_other_preprocessing_is_refused() {
    // The shipped demo calibration records its z-score and trial-window settings; a session
    // that would make its samples differently (a linear detrend here) must not decode with it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    let session = format!(
        "[ingest]\ndir = {:?}\n[preprocess]\ndetrend = true\n[output]\ndir = {:?}\n[decode]\ncalibration = {:?}\n",
        export,
        dir.path().join("out"),
        root.join("calibration/demo")
    );
    let path = dir.path().join("session.toml");
    std::fs::write(&path, session).unwrap();
    let out = brainmclip(&["run", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("calibration/demo/projector.json")
            && err.contains("preprocess.detrend: calibrated with false, this session has true"),
        "{err}"
    );
}

/// The demo checks every shipped model before simulating anything, and says what is missing and
/// where it looked.
#[test]
fn demo_without_its_models_says_what_is_missing_before_simulating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .current_dir(d)
        .args(["demo", "--headless", "--assets", "empty", "--out", "demo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the demo calibration not found")
            && said.contains("projector.mpk")
            && said.contains(&d.join("empty/calibration/demo").display().to_string()),
        "{said}"
    );
    assert!(!d.join("demo/sim").exists(), "it simulated before checking");
}

fn real_dicom(dir: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom/real")
        .join(dir)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn dicom_inspect_convert_and_run_replay() {
    // inspect: the series of a GE folder, as JSON.
    let ge = real_dicom("ge-single-slice/In/SliceTimingRT/2_epiRT_IntAsc_GD0");
    let out = brainmclip(&["inspect", &ge, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let series: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(series[0]["layout"], "single-slice");
    assert_eq!(series[0]["volumes"], 3);
    assert_eq!(series[0]["dims"], serde_json::json!([64, 64, 32]));
    assert_eq!(series[0]["tr_s"], 2.0);
    assert_eq!(series[0]["slice_times_s"].as_array().unwrap().len(), 32);

    // convert: a 4-D run and its sidecar.
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("sub-01_task-x_bold.nii.gz");
    let mosaic = real_dicom("siemens-mosaic/In/ep2d_Int_HF_5");
    let out = brainmclip(&["convert", &mosaic, "--out", out_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = brainmclip::ingest::RunReader::open(&out_path, 1 << 26).unwrap();
    assert_eq!(reader.n_volumes(), 6);
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("sub-01_task-x_bold.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["RepetitionTime"], 3.2);
    assert_eq!(
        sidecar["SliceTiming"][0], 1.34,
        "H>>F: the first z slice is acquired last but one"
    );

    // run --replay of the folder, without a session file: every volume delivered.
    let out = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .args(["run", "--replay", &mosaic, "--speed", "max"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("run ended: 6 delivered, 0 late, 0 missing, 0 rejected"),
        "{stdout}"
    );
    let log = std::fs::read_to_string(dir.path().join("session-out/events.jsonl")).unwrap();
    let volumes = log
        .lines()
        .filter(|l| l.contains("\"event\":\"volume\""))
        .count();
    assert_eq!(volumes, 6);
}
