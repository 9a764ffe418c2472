//! Preprocessing on a simulated session, against the simulator's ground truth: realignment
//! accuracy, masks from the label image, z-scores after warm-up, and trial windows.

use std::path::Path;

use brainmclip::geometry::{rotation, MotionParams};
use brainmclip::ingest::{read_volume_file, RunReader};
use brainmclip::preprocess::masks::Masks;
use brainmclip::preprocess::realign::Realigner;
use brainmclip::preprocess::trials::{read_events, TrialAssembler};
use brainmclip::preprocess::zscore::{RollingZ, ZMode};
use brainmclip::sim::{simulate, SimConfig};

fn read_run(path: &Path) -> Vec<Vec<f32>> {
    let mut reader = RunReader::open(path, 1 << 24).unwrap();
    let mut out = Vec::new();
    while let Some(v) = reader.next_volume() {
        out.push(v.unwrap().0);
    }
    out
}

fn motion_truth(path: &Path) -> Vec<MotionParams> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<f32> = l.split('\t').skip(1).map(|v| v.parse().unwrap()).collect();
            std::array::from_fn(|i| c[i])
        })
        .collect()
}

/// The motion of `p` relative to `reference`: T = Tp ∘ Tref⁻¹, as angles for R = Rz Ry Rx.
fn relative(p: &MotionParams, reference: &MotionParams) -> MotionParams {
    let (r, r0) = (rotation(p), rotation(reference));
    let rel: [[f32; 3]; 3] =
        std::array::from_fn(|a| std::array::from_fn(|b| (0..3).map(|k| r[a][k] * r0[b][k]).sum()));
    let t: [f32; 3] =
        std::array::from_fn(|d| p[d] - (0..3).map(|k| rel[d][k] * reference[k]).sum::<f32>());
    let ry = (-rel[2][0]).asin();
    let rx = rel[2][1].atan2(rel[2][2]);
    let rz = rel[1][0].atan2(rel[0][0]);
    [
        t[0],
        t[1],
        t[2],
        rx.to_degrees(),
        ry.to_degrees(),
        rz.to_degrees(),
    ]
}

#[test]
fn simulated_session_through_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        train_runs: 1,
        test_runs: 0,
        volumes_per_run: 120,
        motion_step: 0.05,
        ..SimConfig::default()
    };
    simulate(&config, dir.path(), 8).unwrap();
    let func = dir.path().join("sub-01/func");
    let volumes = read_run(&func.join("sub-01_task-images_run-01_bold.nii.gz"));
    let first = read_volume_file(
        &dir.path().join("sub-01/anat/sub-01_T2starw.nii.gz"),
        1 << 24,
    )
    .unwrap();
    let geometry = first.header.geometry();
    let dims = geometry.dims;

    // Masks: the label image fits the volumes; detail covers all visual areas, semantic the
    // high-level ones only.
    let anat = dir.path().join("sub-01/anat");
    let masks = Masks::load(
        &anat.join("sub-01_desc-visual_dseg.nii.gz"),
        &anat.join("sub-01_desc-visual_dseg.tsv"),
        &geometry,
        0.01,
    )
    .unwrap();
    let count = |name: &str| masks.labels.iter().find(|l| l.name == name).unwrap().voxels;
    let low: usize = ["V1", "V2", "V3", "hV4"].iter().map(|n| count(n)).sum();
    let high: usize = ["floc-faces", "floc-bodies", "floc-places", "floc-words"]
        .iter()
        .map(|n| count(n))
        .sum();
    assert_eq!(masks.detail.len(), low + high);
    assert_eq!(masks.semantic.len(), high);
    assert!(high > 100 && low > 1000, "{low} low, {high} high");

    // Realignment against the first volume after the dummy scans.
    let dummy = config.dummy_scans;
    let reference = &volumes[dummy];
    let realigner = Realigner::new(reference, dims, [3.0; 3]).unwrap();
    let truth = motion_truth(
        &dir.path()
            .join("derivatives/sim/sub-01/sub-01_task-images_run-01_motion.tsv"),
    );
    let (mut trans_sq, mut rot_sq, mut n) = (0.0f64, 0.0f64, 0.0f64);
    let mut estimate = [0.0f32; 6];
    let mut resliced = Vec::new();
    // Detrended within the window: the run drifts (about 1 %), which would bias trailing z-scores.
    let mut z = RollingZ::new(masks.detail.len(), ZMode::Window(30), true);
    let mut z_semantic = RollingZ::new(masks.semantic.len(), ZMode::Window(30), false);
    let trials = read_events(&func.join("sub-01_task-images_run-01_events.tsv")).unwrap();
    let n_trials = trials.len();
    let last_onset = trials.iter().map(|t| t.onset_s).fold(0.0, f64::max);
    let mut assembler = TrialAssembler::new(config.tr, (4.5, 7.5), trials);
    let mut samples = Vec::new();
    let (mut zsum, mut zsq, mut zn) = (0.0f64, 0.0f64, 0.0f64);
    let (mut detail, mut semantic, mut zd, mut zs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, volume) in volumes.iter().enumerate().skip(dummy) {
        estimate = realigner.estimate(volume, estimate).unwrap();
        let expected = relative(&truth[k], &truth[dummy]);
        for d in 0..3 {
            trans_sq += ((estimate[d] - expected[d]) as f64).powi(2);
            rot_sq += ((estimate[d + 3] - expected[d + 3]) as f64).powi(2);
        }
        n += 3.0;
        realigner.reslice(volume, &estimate, &mut resliced);
        Masks::gather(&masks.detail, &resliced, &mut detail);
        Masks::gather(&masks.semantic, &resliced, &mut semantic);
        z.push(&detail, &mut zd);
        z_semantic.push(&semantic, &mut zs);
        // While images are shown the series is stationary; in the last seconds, after the final
        // image, visual cortex falls back to rest and every z-score goes negative (rightly).
        if z.warmed_up() && (k as f64) * config.tr <= last_onset + 4.0 {
            for v in &zd {
                zsum += *v as f64;
                zsq += (*v as f64).powi(2);
                zn += 1.0;
            }
        }
        samples.extend(assembler.push_volume(k as u32, &zd, &zs));
    }
    samples.extend(assembler.finish());
    let (trans_rms, rot_rms) = ((trans_sq / n).sqrt(), (rot_sq / n).sqrt());
    eprintln!("realignment RMS error: {trans_rms:.4} mm, {rot_rms:.4} deg");
    assert!(
        trans_rms < 0.1 && rot_rms < 0.1,
        "RMS {trans_rms} mm, {rot_rms} deg"
    );
    let largest = truth
        .iter()
        .flat_map(|p| p.iter())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(largest > 0.3, "the head should have moved ({largest})");

    // z-scores after warm-up: mean ~0, SD ~1 over voxels and volumes.
    let mean = zsum / zn;
    let sd = (zsq / zn - mean * mean).sqrt();
    assert!(
        mean.abs() < 0.05 && (sd - 1.0).abs() < 0.1,
        "z mean {mean}, sd {sd}"
    );

    // Every trial became one sample built from the volumes 4.5-7.5 s after its onset.
    assert_eq!(samples.len(), n_trials);
    for s in &samples {
        for &v in &s.volumes {
            let t = v as f64 * config.tr - s.trial.onset_s;
            assert!(
                (4.5 - 1e-6..=7.5 + 1e-6).contains(&t),
                "trial {} used volume {v} at {t} s",
                s.trial.id
            );
        }
        assert!(
            (2..=3).contains(&s.volumes.len()),
            "a 3 s window at TR 1.5 holds 2 or 3 volumes: {:?}",
            s.volumes
        );
        assert_eq!(
            (s.detail.len(), s.semantic.len()),
            (masks.detail.len(), masks.semantic.len())
        );
        assert_eq!(s.missing, 0);
    }
}

#[test]
fn a_mask_on_another_grid_is_refused_with_both_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        train_runs: 1,
        test_runs: 0,
        volumes_per_run: 40,
        image_size: 32,
        ..SimConfig::default()
    };
    simulate(&config, &dir.path().join("a"), 1).unwrap();
    let nsd = SimConfig {
        grid: brainmclip::sim::GridChoice::Nsd,
        ..config
    };
    simulate(&nsd, &dir.path().join("b"), 1).unwrap();
    let a = read_volume_file(
        &dir.path().join("a/sub-01/anat/sub-01_T2starw.nii.gz"),
        1 << 24,
    )
    .unwrap();
    let anat = dir.path().join("b/sub-01/anat");
    let err = Masks::load(
        &anat.join("sub-01_desc-visual_dseg.nii.gz"),
        &anat.join("sub-01_desc-visual_dseg.tsv"),
        &a.header.geometry(),
        0.01,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("b/sub-01/anat/sub-01_desc-visual_dseg.nii.gz")
            && err.contains("dims [64, 64, 36] vs [81, 104, 83]"),
        "{err}"
    );
    // A table without a group column.
    let table = dir.path().join("bad.tsv");
    std::fs::write(&table, "index\tname\n1\tV1\n").unwrap();
    let anat = dir.path().join("a/sub-01/anat");
    let err = Masks::load(
        &anat.join("sub-01_desc-visual_dseg.nii.gz"),
        &table,
        &a.header.geometry(),
        0.01,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bad.tsv") && err.contains("`group`"), "{err}");
}

/// Moved here from `preprocess::realign` so the runtime never imports the simulator, even in
/// its unit tests: known rigid motion of a simulated head is recovered.
#[test]
fn realignment_recovers_known_motion_to_a_hundredth_of_a_mm() {
    let subject = brainmclip::sim::subject::Subject::generate(
        &brainmclip::sim::subject::SubjectParams {
            grid: brainmclip::sim::subject::Grid::MM3,
            psc: [0.0; 5],
            hrf_lag_sd_s: 0.0,
            hrf_width_sd: 0.0,
        },
        9,
    );
    let dims = subject.grid.dims;
    let realigner = Realigner::new(&subject.baseline, dims, [3.0; 3]).unwrap();
    let noise = rand_distr::Normal::new(0.0f32, 12.0).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    for truth in [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.8, -0.5, 0.3, 0.0, 0.0, 0.0],
        [-0.2, 0.4, -1.1, 1.2, -0.7, 0.9],
        [2.0, 1.5, -1.0, -2.0, 1.0, 1.5],
    ] {
        let mut moved = Vec::new();
        brainmclip::geometry::apply_motion(&subject.baseline, dims, 3.0, &truth, &mut moved);
        moved
            .iter_mut()
            .for_each(|v| *v += rand_distr::Distribution::sample(&noise, &mut rng));
        let estimate = realigner.estimate(&moved, [0.0; 6]).unwrap();
        for d in 0..6 {
            assert!(
                (estimate[d] - truth[d]).abs() < 0.05,
                "param {d}: estimated {} for {} (all: {estimate:?} vs {truth:?})",
                estimate[d],
                truth[d]
            );
        }
    }
}
