//! The generator's training job and sampler: seeded sampling is reproducible, training lowers
//! the loss and resumes exactly, the saved EMA weights load back, fine-tuning starts from the
//! given generator (and refuses one of another shape). The shipped demo generator redraws
//! held-out images from their true features and stays clean on brain-like features.

mod common;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use brainmclip::model::conditioner::Conditioner;
use brainmclip::model::generator::files::load_generator;
use brainmclip::model::generator::schedule::{sample, SamplerSettings};
use brainmclip::train::encoder::heldout_stimuli;
use brainmclip::train::generator::{
    condition, train_generator, GeneratorJob, GeneratorTrainConfig,
};
use brainmclip::train::generator_eval::{evaluate_generator, EvalImages};

/// The v-prediction loss of the generator in `dir` on 12 held-out images at fixed times and
/// noise.
fn fixed_batch_loss(dir: &std::path::Path, encoder: &std::path::Path) -> f32 {
    use brainmclip::model::generator::schedule::{scales, seeded_noise};
    use brainmclip::train::generator::image_tensor;
    use burn::prelude::*;
    let (info, model) = load_generator::<Flex>(dir, &FlexDevice).unwrap();
    let conditioner = Conditioner::load(encoder).unwrap();
    let stimuli = heldout_stimuli(21, 12);
    let cond = condition(&conditioner, &stimuli).unwrap();
    let size = info.generator.image_size;
    let x0 = image_tensor::<Flex>(&stimuli, size, &FlexDevice);
    let times: Vec<f64> = (0..12).map(|i| (i as f64 + 0.5) / 12.0).collect();
    let (a, s) = scales::<Flex>(&times, &FlexDevice);
    let eps = seeded_noise::<Flex>(x0.dims(), 99, &FlexDevice);
    let xt = x0.clone() * a.clone() + eps.clone() * s.clone();
    let v = eps * a - x0 * s;
    let t = Tensor::<Flex, 1>::from_data(
        TensorData::new(times.iter().map(|&t| t as f32).collect::<Vec<f32>>(), [12]),
        &FlexDevice,
    );
    (model.forward(xt, t, &cond) - v)
        .powi_scalar(2)
        .mean()
        .into_scalar()
}

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
        images: None,
        heldout_fraction: 0.05,
        config: config.clone(),
        init: None,
        out: out.to_owned(),
        max_steps,
        progress: false,
        device: brainmclip::model::device::DeviceChoice::Cpu,
    };
    let whole = tempfile::tempdir().unwrap();
    let full = train_generator(&job(whole.path(), None)).unwrap();
    assert!(full.complete);
    let losses: Vec<f32> = full.losses.iter().map(|l| l.1).collect();
    // Per-step losses swing with each batch's random noise levels, so the drop is measured on
    // one fixed batch: the trained EMA weights against the seed's weights (learning rate 0).
    let untrained = tempfile::tempdir().unwrap();
    let frozen_job = GeneratorJob {
        config: GeneratorTrainConfig {
            steps: 1,
            learning_rate: 0.0,
            ..config.clone()
        },
        ..job(untrained.path(), None)
    };
    train_generator(&frozen_job).unwrap();
    let (before, after) = (
        fixed_batch_loss(untrained.path(), enc.path()),
        fixed_batch_loss(whole.path(), enc.path()),
    );
    assert!(after < 0.8 * before, "fixed-batch loss {before} -> {after}");

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
    let cond = condition(&conditioner, &heldout_stimuli(5, 2)).unwrap();
    let draw = |seed| {
        let settings = SamplerSettings {
            steps: 4,
            guidance: 1.5,
            seed,
            ..Default::default()
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

    // Fine-tuning at learning rate 0 keeps the starting generator's weights exactly.
    let tuned = tempfile::tempdir().unwrap();
    let frozen = GeneratorJob {
        config: GeneratorTrainConfig {
            steps: 2,
            learning_rate: 0.0,
            ..config.clone()
        },
        init: Some(whole.path().to_owned()),
        ..job(tuned.path(), None)
    };
    assert!(train_generator(&frozen).unwrap().complete);
    let (tuned_info, tuned_model) = load_generator::<Flex>(tuned.path(), &FlexDevice).unwrap();
    assert_eq!(
        tuned_info.init.as_deref(),
        Some(whole.path().to_str().unwrap())
    );
    let settings = SamplerSettings {
        seed: 3,
        ..Default::default()
    };
    let image = |m| {
        sample(m, &cond, 16, settings, &FlexDevice)
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(image(&model), image(&tuned_model));

    // A generator of another shape is refused, naming it.
    let other = tempfile::tempdir().unwrap();
    let mismatched = GeneratorJob {
        config: GeneratorTrainConfig {
            image_size: 32,
            ..config.clone()
        },
        init: Some(whole.path().to_owned()),
        ..job(other.path(), None)
    };
    let err = train_generator(&mismatched).unwrap_err().to_string();
    assert!(
        err.contains(whole.path().to_str().unwrap()) && err.contains("cannot start from"),
        "{err}"
    );
}

/// Grain (`metrics::grain`) the shipped generator's images stay under; the true images have
/// about 0.002.
const GRAIN_BOUND: f64 = 0.012;

#[test]
fn shipped_generator_redraws_held_out_images_and_stays_clean_on_brain_like_features() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (info, model) =
        load_generator::<Flex>(&root.join("assets/demo-generator"), &FlexDevice).unwrap();
    let conditioner = Conditioner::load(&root.join("assets/demo-encoder")).unwrap();
    let images = EvalImages::simulator(&conditioner, info.generator.image_size, 24).unwrap();
    let eval = evaluate_generator(
        &model,
        &conditioner,
        &images,
        info.generator.image_size,
        4,
        8,
        1.0,
    )
    .unwrap();
    // From true features (the bar: PixCorr >= 0.8, 2-way identification >= 95 %).
    assert!(eval.few.pixcorr.mean >= 0.8, "{:?}", eval.few);
    assert!(eval.few.identification.mean >= 0.95, "{:?}", eval.few);
    // From features degraded like a brain decoding's: still a clean picture. With evenly
    // spaced steps this generator drew grain 0.019 from true features and 0.024 from degraded
    // ones (keep 0.2, mix 0.1); the true images have 0.002.
    assert!(eval.degraded.grain < GRAIN_BOUND, "{:?}", eval.degraded);
    assert!(eval.few.grain < GRAIN_BOUND, "{:?}", eval.few);
    assert!(eval.true_grain < 0.005, "{}", eval.true_grain);
}
