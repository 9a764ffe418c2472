//! Settings chosen on the validation split (`[select]`), and the ridge baseline, on a small
//! simulated session: every candidate is scored on the validation trials only, the best one is
//! the calibration that is written and tested, and ridge from the same voxels decodes too.

use std::path::Path;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use brainmclip::model::calibration::Calibration;
use brainmclip::sim::{simulate, SimConfig};
use brainmclip::train::calibrate::{
    collect_responses, stimulus_features, CalibrateConfig, TrainSettings,
};
use brainmclip::train::calibrate_run::{run_calibration, validation_split};
use brainmclip::train::evaluate::{evaluate_decoding, score_decodings, single_object_positions};
use brainmclip::train::ridge::RELATIVE_PENALTIES;
use brainmclip::train::ridge_baseline::ridge_on_calibration_split;

#[test]
fn the_validation_split_chooses_and_ridge_decodes_the_same_trials() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimConfig {
        train_runs: 6,
        test_runs: 2,
        image_size: 32,
        ..SimConfig::default()
    };
    let bids = dir.path().join("bids");
    simulate(&sim, &bids, 5).unwrap();
    let mut config = CalibrateConfig {
        bids: bids.clone(),
        subject: "01".into(),
        encoder: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-encoder"),
        out: dir.path().join("calibration"),
        train: TrainSettings {
            epochs: 40,
            patience: 10,
            ..TrainSettings::default()
        },
        device: brainmclip::model::device::DeviceChoice::Cpu,
        ..CalibrateConfig::default()
    };
    // A grid where one candidate is crippled: 95 % dropout cannot learn in 40 epochs.
    config.select.dropout = vec![0.95, 0.3];
    let report = run_calibration(&config, false).unwrap();
    for c in &report.selection {
        eprintln!(
            "{}: validation {:.3} (semantic {}, detail {}), chosen {}",
            c.name,
            c.validation_score,
            c.validation.semantic_identification,
            c.validation.detail_identification,
            c.chosen
        );
    }
    let names: Vec<&str> = report.selection.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["dropout-0.95", "dropout-0.3"]);
    // Scored on the validation trials, single trials, never the test images.
    for c in &report.selection {
        assert_eq!(c.validation.test_images, report.validation_trials);
        assert!(config
            .out
            .join("select")
            .join(&c.name)
            .join("checkpoint")
            .is_dir());
    }
    let chosen: Vec<_> = report.selection.iter().filter(|c| c.chosen).collect();
    assert_eq!(chosen.len(), 1);
    let best = report
        .selection
        .iter()
        .map(|c| c.validation_score)
        .fold(f64::MIN, f64::max);
    assert_eq!(chosen[0].validation_score, best);
    assert_eq!(
        (report.chosen.as_str(), chosen[0].name.as_str()),
        ("dropout-0.3", "dropout-0.3")
    );

    // What was written is the chosen candidate, and the test figures are its own.
    let calibration = Calibration::<Flex>::load(&config.out, &FlexDevice).unwrap();
    assert_eq!(calibration.info.projector.dropout, 0.3);
    let features = stimulus_features(&config, calibration.info.detail_layers).unwrap();
    let responses = collect_responses(&config).unwrap();
    let positions = single_object_positions(&bids.join("stimuli")).unwrap();
    let train_ids: Vec<String> = responses.train.iter().map(|r| r.stimulus.clone()).collect();
    let (again, _) = evaluate_decoding(
        &calibration,
        &responses.test,
        &train_ids,
        &features,
        &positions,
    )
    .unwrap();
    assert_eq!(
        again.semantic_identification.mean,
        report.test.semantic_identification.mean
    );
    assert_eq!(
        again.detail_identification.mean,
        report.test.detail_identification.mean
    );

    // Ridge on the same split decodes well above chance, its penalties from the grid.
    let (val_rows, fit_rows) = validation_split(responses.train.len(), &config.train);
    assert_eq!(
        (fit_rows.len(), val_rows.len()),
        (report.train_trials, report.validation_trials)
    );
    let (decoded, choice) = ridge_on_calibration_split(
        &calibration,
        &responses.train,
        &responses.test,
        &features,
        &config.train,
    )
    .unwrap();
    let ridge =
        score_decodings(&decoded, &responses.test, &train_ids, &features, &positions).unwrap();
    eprintln!(
        "projector: semantic {} detail {}; ridge: semantic {} detail {}; penalties {choice:?}",
        report.test.semantic_identification,
        report.test.detail_identification,
        ridge.semantic_identification,
        ridge.detail_identification
    );
    assert!(ridge.semantic_identification.mean > 0.7, "{ridge:?}");
    assert!(ridge.detail_identification.mean > 0.7, "{ridge:?}");
    for c in [&choice.detail, &choice.semantic] {
        assert!(RELATIVE_PENALTIES.contains(&c.relative_penalty));
        assert!(c.validation_r2 > 0.0, "{c:?}");
    }
}
