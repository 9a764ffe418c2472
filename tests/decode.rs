//! The decode stage's generator worker: the newest waiting trial is drawn, older waiting ones
//! are skipped and counted (never queued without bound), nothing offered is lost without a
//! count, and a generator made for other features is refused by name.

mod common;

use brainmclip::config::DecodeConfig;
use brainmclip::decode::{DecodeError, DecodedTrial, Generation};
use brainmclip::train::generator::{train_generator, GeneratorJob, GeneratorTrainConfig};

fn tiny_generator(root: &std::path::Path) -> std::path::PathBuf {
    let enc = root.join("encoder");
    common::tiny_encoder(&enc);
    let out = root.join("generator");
    train_generator(&GeneratorJob {
        encoder: enc,
        images: None,
        heldout_fraction: 0.05,
        config: GeneratorTrainConfig {
            steps: 1,
            batch: 2,
            warmup_steps: 1,
            image_size: 32,
            ..GeneratorTrainConfig::default()
        },
        init: None,
        out: out.clone(),
        max_steps: None,
        device: brainmclip::model::device::DeviceChoice::Cpu,
        progress: false,
    })
    .unwrap();
    out
}

fn trial(id: u64) -> DecodedTrial {
    DecodedTrial {
        trial: id,
        stimulus: Some(format!("s{id}.png")),
        feedback: None,
        sample_ns: id,
        decoded_ns: id + 1,
        embedding: vec![0.1; 16],
        tokens: vec![0.2; 17 * 32],
        ..DecodedTrial::default()
    }
}

#[test]
fn newest_trial_wins_and_skips_are_counted() {
    let root = tempfile::tempdir().unwrap();
    let dir = tiny_generator(root.path());
    let config = DecodeConfig {
        steps: 50,
        ..DecodeConfig::default()
    };
    let generation = Generation::start(&dir, &config, 17, 32, 16).unwrap();
    // Offered back to back: the worker is still drawing the first while the rest arrive.
    for id in 0..6 {
        generation.submit(trial(id));
    }
    let skipped = generation.skipped();
    let drawn = generation.finish();
    let ids: Vec<u64> = drawn.iter().map(|r| r.trial).collect();
    assert_eq!(
        ids.last(),
        Some(&5),
        "the newest trial is always drawn: {ids:?}"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(ids.len() + skipped, 6, "drawn {ids:?} + skipped {skipped}");
    assert!(
        skipped >= 1,
        "six offers during one 50-step image must skip some"
    );
    let reported: usize = drawn.iter().map(|r| r.skipped_before).sum();
    assert_eq!(reported, skipped);
    for r in &drawn {
        assert_eq!(r.rgb.len(), 32 * 32 * 3);
        assert!(r.generated_ns >= r.decoded_ns);
    }
}

#[test]
fn a_generator_for_other_features_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = tiny_generator(root.path());
    let err = match Generation::start(&dir, &DecodeConfig::default(), 65, 128, 128) {
        Err(e @ DecodeError::Mismatch { .. }) => e.to_string(),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a mismatched generator must be refused"),
    };
    assert!(
        err.contains("generator") && err.contains("17 tokens") && err.contains("65 x 128"),
        "{err}"
    );
}

#[test]
fn the_start_up_pass_makes_the_first_trial_as_fast_as_the_tenth() {
    // On a GPU the first image would otherwise pay kernel compilation and autotuning (seconds);
    // here, on the CPU path, the check is that the pass runs at start-up and the first trial
    // costs what the others do.
    let root = tempfile::tempdir().unwrap();
    let dir = tiny_generator(root.path());
    let (tx, rx) = crossbeam_channel::unbounded();
    let generation = Generation::start_into(&dir, &DecodeConfig::default(), 17, 32, 16, move |r| {
        tx.send((r.trial, std::time::Instant::now())).is_ok()
    })
    .unwrap();
    assert!(generation.warmup_ms() > 0.0, "the start-up pass ran");
    let mut ms = Vec::new();
    for id in 0..10 {
        let offered = std::time::Instant::now();
        generation.submit(trial(id));
        let (drawn, at) = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        assert_eq!(drawn, id);
        ms.push(at.duration_since(offered).as_secs_f64() * 1e3);
    }
    let mut later = ms[1..].to_vec();
    later.sort_by(f64::total_cmp);
    let median = later[later.len() / 2];
    assert!(
        ms[0] <= 2.0 * median + 5.0,
        "first trial {:.1} ms, median of the next nine {median:.1} ms",
        ms[0]
    );
    generation.finish();
}
