//! `calibrate` from per-trial responses estimated offline (`[betas]`): single-trial betas of a
//! simulated session (`brainmclip betas`) give the projector the quality its runs give through
//! the live preprocessing; a betas file that does not match its table is refused, naming both.

use std::path::{Path, PathBuf};

use brainmclip::sim::{simulate, SimConfig};
use brainmclip::train::betas::{estimate_betas, BetasJob};
use brainmclip::train::calibrate::{BetasInput, CalibrateConfig, TrainSettings};
use brainmclip::train::calibrate_run::run_calibration;

fn calibration(bids: &Path, out: PathBuf, betas: Option<BetasInput>) -> CalibrateConfig {
    CalibrateConfig {
        bids: bids.to_owned(),
        subject: "01".into(),
        encoder: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-encoder"),
        out,
        train: TrainSettings {
            epochs: 60,
            patience: 15,
            ..TrainSettings::default()
        },
        device: brainmclip::model::device::DeviceChoice::Cpu,
        betas,
        ..CalibrateConfig::default()
    }
}

#[test]
fn betas_of_a_simulated_session_calibrate_as_well_as_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimConfig {
        train_runs: 8,
        test_runs: 2,
        image_size: 32,
        ..SimConfig::default()
    };
    let bids = dir.path().join("bids");
    simulate(&sim, &bids, 4).unwrap();
    let summary =
        estimate_betas(&BetasJob::new(bids.clone(), "01", dir.path().join("betas"))).unwrap();
    let input = BetasInput {
        file: summary.betas.clone(),
        trials: summary.table.clone(),
    };

    let from_runs =
        run_calibration(&calibration(&bids, dir.path().join("runs"), None), false).unwrap();
    let from_betas = run_calibration(
        &calibration(&bids, dir.path().join("from-betas"), Some(input.clone())),
        false,
    )
    .unwrap();
    let (r, b) = (&from_runs.test, &from_betas.test);
    eprintln!(
        "semantic identification: runs {} betas {}; pooled detail: runs {} betas {}",
        r.semantic_identification,
        b.semantic_identification,
        r.detail_identification,
        b.detail_identification
    );
    assert!(
        from_betas.responses.starts_with("betas "),
        "{}",
        from_betas.responses
    );
    assert_eq!(from_runs.test_images, from_betas.test_images);
    assert_eq!(
        from_runs.train_trials + from_runs.validation_trials,
        from_betas.train_trials + from_betas.validation_trials
    );
    for (what, runs, betas) in [
        (
            "semantic",
            &r.semantic_identification,
            &b.semantic_identification,
        ),
        ("detail", &r.detail_identification, &b.detail_identification),
    ] {
        // Both decode (well above chance), and each lies in the other's bootstrap interval.
        assert!(
            runs.mean > 0.6 && betas.mean > 0.6,
            "{what}: runs {runs} betas {betas}"
        );
        assert!(
            (runs.low..=runs.high).contains(&betas.mean)
                || (betas.low..=betas.high).contains(&runs.mean),
            "{what}: runs {runs} betas {betas}"
        );
    }

    // A table that names fewer trials than the file has volumes is refused, naming both.
    let short = dir.path().join("short.tsv");
    let table = std::fs::read_to_string(&input.trials).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    std::fs::write(&short, lines[..lines.len() - 1].join("\n")).unwrap();
    let err = run_calibration(
        &calibration(
            &bids,
            dir.path().join("short"),
            Some(BetasInput {
                file: input.file.clone(),
                trials: short.clone(),
            }),
        ),
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("singletrial_betas.nii.gz")
            && err.contains("short.tsv")
            && err.contains("one row per volume"),
        "{err}"
    );
}
