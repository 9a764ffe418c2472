//! `train::betas` on a small simulated session: one volume per trial in events order, zeros
//! outside the detail mask, and betas that carry the stimulus (repeats of a test image agree
//! more with each other than with other images).

use std::collections::BTreeMap;
use std::path::Path;

use brainmclip::ingest::RunReader;
use brainmclip::metrics::pearson;
use brainmclip::preprocess::masks::Masks;
use brainmclip::sim::{simulate, SimConfig};
use brainmclip::train::betas::{estimate_betas, BetasJob};

/// (onset, stim_file, trial_type) of every run's events, runs in name order, trials by onset.
fn events_in_order(func: &Path) -> Vec<(String, f64, String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(func)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_events.tsv"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let run = f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace("_events.tsv", "");
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rows: Vec<(String, f64, String, String)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                (run.clone(), c[0].parse().unwrap(), c[3].into(), c[2].into())
            })
            .collect();
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        out.extend(rows);
    }
    out
}

#[test]
fn single_trial_betas_of_a_simulated_session() {
    let dir = tempfile::tempdir().unwrap();
    // Short runs (19 trials each), with the simulator's motion, drift and physiological noise
    // but a higher tSNR than its default 70: single-trial betas of a 4 s-SOA design are noisy
    // (at tSNR 70 the same check gave within 0.05-0.08 against between -0.03 over seeds 3, 9,
    // 11), and 37 repeat pairs need a clearer signal to make a test that cannot pass by luck.
    let sim = SimConfig {
        tsnr: 250.0,
        volumes_per_run: 64,
        train_runs: 1,
        test_runs: 2,
        image_size: 32,
        ..SimConfig::default()
    };
    let bids = dir.path().join("bids");
    simulate(&sim, &bids, 3).unwrap();
    let job = BetasJob::new(bids.clone(), "01", dir.path().join("betas"));
    let summary = estimate_betas(&job).unwrap();
    eprintln!(
        "{} runs, {} trials, {} voxels in {:.2} s; per run: {:?}",
        summary.runs, summary.trials, summary.voxels, summary.seconds, summary.per_run
    );
    assert_eq!(summary.runs, 3);
    // Dummy scans from the sidecars; trials fill these runs, so only a linear drift is kept.
    for run in &summary.per_run {
        assert_eq!((run.dummy_scans, run.drift_degree), (4, 1), "{run:?}");
    }

    // One row and one volume per trial, in run then onset order, names as in the events.
    let events = events_in_order(&bids.join("sub-01/func"));
    assert_eq!(summary.trials, events.len());
    let table = std::fs::read_to_string(&summary.table).unwrap();
    let mut lines = table.lines();
    assert_eq!(
        lines.next(),
        Some("volume\trun\tonset\tstim_file\ttrial_type")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), events.len());
    for (k, (row, (run, onset, stim, kind))) in rows.iter().zip(&events).enumerate() {
        assert_eq!(row[0], k.to_string());
        assert_eq!(row[1], run);
        assert!((row[2].parse::<f64>().unwrap() - onset).abs() < 1e-6);
        assert_eq!((row[3], row[4]), (stim.as_str(), kind.as_str()));
    }

    let mut reader = RunReader::open(&summary.betas, 1 << 26).unwrap();
    assert_eq!(reader.n_volumes(), events.len());
    let geometry = reader.header().geometry();
    let anat = bids.join("sub-01/anat");
    let masks = Masks::load(
        &anat.join("sub-01_desc-visual_dseg.nii.gz"),
        &anat.join("sub-01_desc-visual_dseg.tsv"),
        &geometry,
        0.01,
    )
    .unwrap();
    let mut inside = vec![false; geometry.n_voxels()];
    masks.detail.iter().for_each(|&i| inside[i] = true);
    // Test trials' betas at the semantic voxels, by image.
    let mut by_image: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    for (stim, kind) in events.iter().map(|e| (&e.2, &e.3)) {
        let (volume, _) = reader.next_volume().unwrap().unwrap();
        for (i, &v) in volume.iter().enumerate() {
            if inside[i] {
                assert!(v.is_finite() && v.abs() < 100.0, "voxel {i}: {v}");
            } else {
                assert_eq!(v, 0.0, "voxel {i} is outside the mask");
            }
        }
        let nonzero = masks.detail.iter().filter(|&&i| volume[i] != 0.0).count();
        assert!(nonzero > masks.detail.len() * 9 / 10, "{nonzero} nonzero");
        if kind == "test" {
            let pattern = masks.semantic.iter().map(|&i| volume[i]).collect();
            by_image.entry(stim.clone()).or_default().push(pattern);
        }
    }
    let (w, b, pairs) = within_between(by_image);
    eprintln!(
        "semantic voxels {}: within-image r {w:.3} ({} pairs), between-image r {b:.3} ({} pairs)",
        masks.semantic.len(),
        pairs.0,
        pairs.1
    );
    assert!(w > b + 0.2, "within {w:.3} vs between {b:.3}");
}

/// Mean correlation between repeats of an image and between trials of different images (with
/// the numbers of pairs), each voxel z-scored over all the trials first, as NSD's betas are
/// used: what every image evokes (a voxel's overall responsiveness) would otherwise correlate
/// any two trials.
fn within_between(mut by_image: BTreeMap<String, Vec<Vec<f32>>>) -> (f64, f64, (usize, usize)) {
    let n = by_image.values().map(Vec::len).sum::<usize>() as f32;
    let voxels = by_image.values().flatten().next().map_or(0, Vec::len);
    for v in 0..voxels {
        let values = || by_image.values().flatten().map(|p| p[v]);
        let m = values().sum::<f32>() / n;
        let sd = (values().map(|x| (x - m).powi(2)).sum::<f32>() / n)
            .sqrt()
            .max(1e-6);
        for pattern in by_image.values_mut().flatten() {
            pattern[v] = (pattern[v] - m) / sd;
        }
    }
    let images: Vec<&Vec<Vec<f32>>> = by_image.values().filter(|v| v.len() > 1).collect();
    assert!(images.len() >= 5, "{} repeated test images", images.len());
    let (mut within, mut between) = (Vec::new(), Vec::new());
    for (a, trials_a) in images.iter().enumerate() {
        for (i, x) in trials_a.iter().enumerate() {
            within.extend(trials_a[i + 1..].iter().map(|y| pearson(x, y)));
            for trials_b in &images[a + 1..] {
                between.extend(trials_b.iter().map(|y| pearson(x, y)));
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (mean(&within), mean(&between), (within.len(), between.len()))
}
