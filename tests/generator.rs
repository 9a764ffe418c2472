//! The generator's training job and sampler: seeded sampling is reproducible, training lowers
//! the loss and resumes exactly, the saved EMA weights load back.

mod common;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use brainmclip::model::generator::schedule::{sample, SamplerSettings};
use brainmclip::train::encoder::heldout_stimuli;
use brainmclip::train::generator::{
    load_generator, train_generator, Conditioner, GeneratorJob, GeneratorTrainConfig,
};

#[test]
fn training_lowers_the_loss_resumes_exactly_and_samples_reproducibly() {
    let enc = tempfile::tempdir().unwrap();
    common::tiny_encoder(enc.path());
    let config = GeneratorTrainConfig {
        steps: 40,
        batch: 6,
        warmup_steps: 4,
        checkpoint_every: 10,
        image_size: 16,
        learning_rate: 2e-3,
        ..GeneratorTrainConfig::default()
    };
    let job = |out: &std::path::Path, max_steps| GeneratorJob {
        encoder: enc.path().to_owned(),
        config: config.clone(),
        out: out.to_owned(),
        max_steps,
        progress: false,
        device: brainmclip::model::device::DeviceChoice::Cpu,
    };
    let whole = tempfile::tempdir().unwrap();
    let full = train_generator(&job(whole.path(), None)).unwrap();
    assert!(full.complete);
    let losses: Vec<f32> = full.losses.iter().map(|l| l.1).collect();
    let head = losses[..8].iter().sum::<f32>() / 8.0;
    let tail = losses[losses.len() - 8..].iter().sum::<f32>() / 8.0;
    assert!(tail < 0.8 * head, "loss {head} -> {tail}");

    let split = tempfile::tempdir().unwrap();
    let first = train_generator(&job(split.path(), Some(20))).unwrap();
    assert!(!first.complete);
    let second = train_generator(&job(split.path(), None)).unwrap();
    assert_eq!(second.resumed_from, 20);
    let resumed: Vec<f32> = second.losses.iter().map(|l| l.1).collect();
    let diff = losses
        .iter()
        .zip(&resumed)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-4, "{losses:?}\n{resumed:?}");

    let (info, model) = load_generator::<Flex>(whole.path(), &FlexDevice).unwrap();
    assert_eq!(info.generator.image_size, 16);
    let conditioner = Conditioner::load(enc.path()).unwrap();
    let cond = conditioner.condition(&heldout_stimuli(5, 2)).unwrap();
    let draw = |seed| {
        let settings = SamplerSettings {
            steps: 4,
            guidance: 1.5,
            seed,
            start: 1.0,
        };
        sample(&model, &cond, 16, settings, &FlexDevice)
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let (a, b, c) = (draw(1), draw(1), draw(2));
    assert_eq!(a.len(), 2 * 3 * 16 * 16);
    assert_eq!(a, b, "same seed, same image");
    assert_ne!(a, c, "another seed, another image");
    assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
}
