//! The decode stage's generator worker: the newest waiting trial is drawn, older waiting ones
//! are skipped and counted (never queued without bound), nothing offered is lost without a
//! count, and a generator made for other features is refused by name.

mod common;

use brainmclip::config::DecodeConfig;
use brainmclip::decode::{DecodeError, DecodedTrial, Generation, Predicted};
use brainmclip::train::generator::{train_generator, GeneratorJob, GeneratorTrainConfig};

fn predicted(tokens: usize, width: usize, dim: usize) -> Predicted {
    Predicted {
        tokens,
        width,
        dim,
        embedding_norm: None,
    }
}

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
    let generation = Generation::start(&dir, &config, predicted(17, 32, 16)).unwrap();
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
    let err = match Generation::start(&dir, &DecodeConfig::default(), predicted(65, 128, 128)) {
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
    let generation = Generation::start_into(
        &dir,
        &DecodeConfig::default(),
        predicted(17, 32, 16),
        move |r| tx.send((r.trial, std::time::Instant::now())).is_ok(),
    )
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

#[test]
fn an_unclip_folder_draws_from_the_rescaled_semantic_embedding_alone() {
    use brainmclip::model::unclip::{load_unclip, SampleSettings, SeededNoise};
    use burn::backend::flex::FlexDevice;
    use burn::backend::Flex;
    use burn::prelude::*;

    let karlo =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unclip/tiny-karlo");
    let config = DecodeConfig {
        steps: 3,
        guidance: 4.0,
        seed: 9,
        device: brainmclip::model::device::DeviceChoice::Cpu,
        ..DecodeConfig::default()
    };
    // The tiny Karlo takes 24-d embeddings; the detail stream's shape is not its business.
    let shape = Predicted {
        tokens: 5,
        width: 7,
        dim: 24,
        embedding_norm: Some(3.0),
    };
    let embedding: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
    let generation = Generation::start(&karlo, &config, shape).unwrap();
    let with_tokens = |tokens: Vec<f32>| DecodedTrial {
        trial: 1,
        embedding: embedding.clone(),
        tokens,
        ..DecodedTrial::default()
    };
    generation.submit(with_tokens(vec![0.0; 35]));
    let first = generation.finish();
    let generation = Generation::start(&karlo, &config, shape).unwrap();
    generation.submit(with_tokens(vec![5.0; 35]));
    let second = generation.finish();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].size, 32, "the super-resolution stage's side");
    assert_eq!(
        first[0].rgb, second[0].rgb,
        "the detail tokens must not matter"
    );

    // The same image straight from the pipeline: the embedding rescaled to norm 3, the seed's
    // noise, the configured steps and guidance.
    let pipeline = load_unclip::<Flex>(&karlo, &FlexDevice).unwrap().pipeline;
    let length = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
    let scaled: Vec<f32> = embedding.iter().map(|v| v * 3.0 / length).collect();
    let sampled = pipeline
        .sample(
            Tensor::from_data(TensorData::new(scaled, [1, 24]), &FlexDevice),
            &SampleSettings {
                decoder_steps: 3,
                super_res_steps: 3,
                guidance_scale: 4.0,
            },
            &mut SeededNoise::new(9),
        )
        .unwrap();
    let planes: Vec<f32> = sampled.image.into_data().to_vec().unwrap();
    let area = 32 * 32;
    let max_step = (0..area)
        .flat_map(|p| (0..3).map(move |c| (p, c)))
        .map(|(p, c)| {
            let want = (planes[c * area + p] * 255.0).round();
            (want - f32::from(first[0].rgb[p * 3 + c])).abs()
        })
        .fold(0.0f32, f32::max);
    assert!(
        max_step <= 1.0,
        "{max_step} 8-bit steps from the pipeline's own image"
    );
    let spread = first[0].rgb.iter().map(|&v| v as i32).max().unwrap()
        - first[0].rgb.iter().map(|&v| v as i32).min().unwrap();
    assert!(spread > 20, "a flat image is no test: spread {spread}");

    let err = Generation::start(&karlo, &config, Predicted { dim: 16, ..shape })
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("24-d") && err.contains("16-d") && err.contains("tiny-karlo"),
        "{err}"
    );
}
