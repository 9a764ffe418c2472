//! The console's figures on a simulated run, against two things we did not compute with our
//! code: a NumPy reference of FD, DVARS, std DVARS and tSNR on the same run
//! (`tests/fixtures/monitor/sim_reference.py`, values stored beside it), and the simulator's
//! ground-truth motion, whose spikes the live run must flag and whose FD decides the usable
//! minutes.

use std::path::Path;
use std::process::Command;

use brainmclip::config::MonitorConfig;
use brainmclip::geometry::framewise_displacement;
use brainmclip::ingest::RunReader;
use brainmclip::preprocess::masks::Masks;
use brainmclip::preprocess::quality::RunQuality;

const DUMMIES: usize = 4;
const TR_S: f64 = 1.5;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/monitor")
        .join(name)
}

/// The run of `tests/fixtures/monitor/sim.toml`, seed 5, simulated into `d/bids`.
fn simulate(d: &Path) -> std::path::PathBuf {
    let bids = d.join("bids");
    let out = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .args(["simulate", "--out", bids.to_str().unwrap(), "--seed", "5"])
        .args(["--config", fixture("sim.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bids
}

/// The simulator's motion parameters, one row per acquisition (0-based).
fn truth(bids: &Path) -> Vec<[f32; 6]> {
    let path = bids.join("derivatives/sim/sub-01/sub-01_task-images_run-01_motion.tsv");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<f32> = line
                .split('\t')
                .skip(1)
                .map(|c| c.parse().unwrap())
                .collect();
            std::array::from_fn(|i| cells[i])
        })
        .collect()
}

fn masks(bids: &Path, geometry: &brainmclip::ingest::Geometry) -> Masks {
    let anat = bids.join("sub-01/anat");
    Masks::load(
        &anat.join("sub-01_desc-visual_dseg.nii.gz"),
        &anat.join("sub-01_desc-visual_dseg.tsv"),
        geometry,
        1e-3,
    )
    .unwrap()
}

fn close(got: f64, want: f64, relative: f64, what: &str) {
    assert!(
        (got - want).abs() <= relative * want.abs().max(1e-9),
        "{what}: {got} vs NumPy's {want}"
    );
}

#[test]
fn fd_dvars_and_tsnr_equal_numpys_on_the_same_simulated_run() {
    let dir = tempfile::tempdir().unwrap();
    let bids = simulate(dir.path());
    let truth = truth(&bids);
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("sim_reference.json")).unwrap())
            .unwrap();
    let mut reader = RunReader::open(
        &bids.join("sub-01/func/sub-01_task-images_run-01_bold.nii.gz"),
        1 << 28,
    )
    .unwrap();
    let geometry = reader.header().geometry();
    let masks = masks(&bids, &geometry);
    // The monitor exactly as the preprocessing stage builds it, fed the raw voxels.
    let mut quality = RunQuality::new(MonitorConfig::default(), Some(&masks));
    let mut detail = Vec::new();
    let mut k = 0;
    let mut compared = [0usize; 4];
    while let Some(volume) = reader.next_volume() {
        let (volume, _) = volume.unwrap();
        if k < DUMMIES {
            k += 1;
            continue;
        }
        let t = k - DUMMIES;
        let fd = (t > 0).then(|| framewise_displacement(&truth[k - 1], &truth[k]));
        Masks::gather(&masks.detail, &volume, &mut detail);
        let (f, _) = quality.push(fd, &detail, &volume, &geometry, TR_S);
        let want = |key: &str| reference[key][t].as_f64();
        match (fd, want("fd")) {
            (Some(got), Some(w)) => close(f64::from(got), w, 1e-4, &format!("FD {t}")),
            (None, None) => {}
            other => panic!("FD {t}: {other:?}"),
        }
        match (f.dvars, want("dvars")) {
            (Some(got), Some(w)) => {
                close(f64::from(got), w, 1e-4, &format!("DVARS {t}"));
                compared[0] += 1;
            }
            (None, None) => {}
            other => panic!("DVARS {t}: {other:?}"),
        }
        match (f.std_dvars, want("std_dvars")) {
            (Some(got), Some(w)) => {
                close(f64::from(got), w, 1e-3, &format!("std DVARS {t}"));
                compared[1] += 1;
            }
            (None, None) => {}
            other => panic!("std DVARS {t}: {other:?}"),
        }
        for (group, key, slot) in [
            ("detail", "tsnr_detail", 2),
            ("semantic", "tsnr_semantic", 3),
        ] {
            let got = f
                .tsnr
                .iter()
                .find(|g| g.group == group)
                .map(|g| f64::from(g.median));
            match (got, want(key)) {
                (Some(got), Some(w)) => {
                    close(got, w, 1e-3, &format!("tSNR {group} {t}"));
                    compared[slot] += 1;
                }
                (None, None) => {}
                other => panic!("tSNR {group} {t}: {other:?}"),
            }
        }
        k += 1;
    }
    // 96 volumes after the dummies: DVARS from the 2nd, std DVARS from the 4th, tSNR from the 3rd.
    assert_eq!(compared, [95, 93, 94, 94]);
}

#[test]
fn a_live_run_flags_the_simulators_motion_spikes_and_counts_usable_minutes_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bids = simulate(d);
    let truth = truth(&bids);
    let session = d.join("session.toml");
    std::fs::write(
        &session,
        format!(
            "[session]\ntr = {TR_S}\nvolumes = 100\n[ingest]\ndir = \"export\"\n[preprocess]\ndummy_scans = {DUMMIES}\n\
             labels = \"bids/sub-01/anat/sub-01_desc-visual_dseg.nii.gz\"\n\
             label_table = \"bids/sub-01/anat/sub-01_desc-visual_dseg.tsv\"\n\
             [feedback]\nenabled = false\n[output]\ndir = \"out\"\n"
        ),
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .current_dir(d)
        .args([
            "run",
            "--config",
            "session.toml",
            "--speed",
            "max",
            "--replay",
        ])
        .arg(bids.join("sub-01/func/sub-01_task-images_run-01_bold.nii.gz"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let monitors: Vec<serde_json::Value> = std::fs::read_to_string(d.join("out/events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "monitor")
        .collect();
    assert_eq!(monitors.len(), 96);

    // Truth FD of each monitored volume (scanner index i = acquisition i - 1), none for the first.
    let true_fd: Vec<Option<f32>> = monitors
        .iter()
        .map(|m| {
            let i = m["index"].as_u64().unwrap() as usize;
            (i > DUMMIES + 1).then(|| framewise_displacement(&truth[i - 2], &truth[i - 1]))
        })
        .collect();
    // Realignment estimated this run's FD within 0.066 mm of the truth (0.014 on average);
    // volumes whose true FD is that close to a threshold may fall either side of it.
    const MARGIN: f32 = 0.08;
    let mut spikes = 0;
    for (m, fd) in monitors.iter().zip(&true_fd) {
        let Some(fd) = fd else { continue };
        if (fd - 0.5).abs() < MARGIN {
            continue;
        }
        assert_eq!(
            m["fd_over_limit"] == true,
            *fd > 0.5,
            "true FD {fd} mm at {m}"
        );
        spikes += usize::from(*fd > 0.5);
    }
    assert!(spikes >= 20, "only {spikes} clear spikes flagged");

    let last = monitors.last().unwrap();
    for t in last["thresholds"].as_array().unwrap() {
        let limit = t["threshold_mm"].as_f64().unwrap() as f32;
        let usable = true_fd
            .iter()
            .filter(|fd| fd.is_none_or(|fd| fd <= limit))
            .count();
        let unsure = true_fd
            .iter()
            .filter(|fd| fd.is_some_and(|fd| (fd - limit).abs() < MARGIN))
            .count();
        let counted = t["volumes"].as_u64().unwrap() as usize;
        // At 0.2 mm the run's ordinary drift sits near the threshold (19 volumes within the
        // margin); at 0.3 and 0.5 mm only a few.
        assert!(
            unsure <= 24,
            "{unsure} volumes near {limit} mm: the check says little"
        );
        assert!(
            counted.abs_diff(usable) <= unsure,
            "{limit} mm: {counted} usable, the truth says {usable} (±{unsure})"
        );
        // FIRMM's arithmetic on those counts.
        let minutes = counted as f64 * TR_S / 60.0;
        assert!((t["minutes"].as_f64().unwrap() - minutes).abs() < 1e-9);
        let rate = counted as f64 / 96.0;
        let projected = 96.0 * TR_S / 60.0 + (10.0 - minutes).max(0.0) / rate;
        assert!((t["projected_total_minutes"].as_f64().unwrap() - projected).abs() < 1e-9);
    }
}
