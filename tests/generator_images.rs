//! `train-generator --images`: a folder tree of images instead of the simulator's stream. On a
//! folder of exported simulator images it reaches the quality of training on the simulator
//! with the same recipe; on the real photographs that ship with scikit-image it runs, resumes
//! exactly, reuses its cached features and overfits the small set.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use brainmclip::model::conditioner::Conditioner;
use brainmclip::model::device::DeviceChoice;
use brainmclip::model::generator::files::load_generator;
use brainmclip::sim::stimuli::{render, to_rgb8};
use brainmclip::train::encoder::training_stimuli;
use brainmclip::train::generator::{train_generator, GeneratorJob, GeneratorTrainConfig};
use brainmclip::train::generator_eval::{evaluate_generator, EvalImages, GeneratorEval};
use brainmclip::train::image_folder::{ImageFolder, FEATURES_FILE};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn job(
    encoder: &Path,
    images: Option<&Path>,
    config: &GeneratorTrainConfig,
    out: &Path,
) -> GeneratorJob {
    GeneratorJob {
        encoder: encoder.to_owned(),
        images: images.map(Path::to_owned),
        heldout_fraction: 0.1,
        config: config.clone(),
        init: None,
        out: out.to_owned(),
        max_steps: None,
        progress: false,
        device: DeviceChoice::Cpu,
    }
}

fn evaluate(
    out: &Path,
    encoder: &Path,
    images: impl FnOnce(&Conditioner, usize) -> EvalImages,
) -> GeneratorEval {
    let (info, model) = load_generator::<Flex>(out, &FlexDevice).unwrap();
    let conditioner = Conditioner::load(encoder).unwrap();
    let size = info.generator.image_size;
    let set = images(&conditioner, size);
    evaluate_generator(&model, &conditioner, &set, size, 4, 8, 1.0).unwrap()
}

/// Simulator images as PNG files in two subfolders (the tree is part of what is tested).
fn export_simulator_images(dir: &Path, n: usize, size: usize) {
    let stimuli = training_stimuli(77, 0, n);
    for (i, s) in stimuli.iter().enumerate() {
        let sub = dir.join(if i % 2 == 0 { "even" } else { "odd" });
        std::fs::create_dir_all(&sub).unwrap();
        let rgb =
            image::RgbImage::from_raw(size as u32, size as u32, to_rgb8(&render(s, size))).unwrap();
        rgb.save(sub.join(format!("sim{i:04}.png"))).unwrap();
    }
}

#[test]
fn a_folder_of_simulator_images_trains_as_well_as_the_simulator_itself() {
    let encoder = root().join("assets/demo-encoder");
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("images");
    export_simulator_images(&images, 800, 64);
    let config = GeneratorTrainConfig {
        steps: 400,
        batch: 8,
        warmup_steps: 20,
        checkpoint_every: 400,
        image_size: 32,
        learning_rate: 2e-3,
        ..GeneratorTrainConfig::default()
    };
    let from_folder = work.path().join("from-folder");
    let from_simulator = work.path().join("from-simulator");
    train_generator(&job(&encoder, Some(&images), &config, &from_folder)).unwrap();
    train_generator(&job(&encoder, None, &config, &from_simulator)).unwrap();

    let layers = Conditioner::load(&encoder).unwrap().layers;
    let folder = ImageFolder::prepare(&images, &encoder, layers, &from_folder, 0.1, false).unwrap();
    // 800 images, a tenth held out by the hash of their ids: 80 ± 8.5.
    assert!(
        (50..110).contains(&folder.heldout.len()),
        "{}",
        folder.heldout.len()
    );
    assert!(folder.heldout.iter().all(|r| !folder.train.contains(r)));
    let on_folder = evaluate(&from_folder, &encoder, |_, size| {
        EvalImages::folder(&folder, &folder.heldout, size, 40).unwrap()
    });
    let on_simulator = evaluate(&from_simulator, &encoder, |c, size| {
        EvalImages::simulator(c, size, 40).unwrap()
    });
    eprintln!(
        "held-out PixCorr: folder-trained {:?}, simulator-trained {:?}",
        on_folder.few.pixcorr, on_simulator.few.pixcorr
    );
    assert!(on_folder.few.pixcorr.mean >= 0.8, "{:?}", on_folder.few);
    assert!(
        on_folder.few.pixcorr.mean >= on_simulator.few.pixcorr.mean - 0.05,
        "folder {:?} vs simulator {:?}",
        on_folder.few,
        on_simulator.few
    );
    assert!(
        on_folder.few.identification.mean >= 0.9,
        "{:?}",
        on_folder.few
    );
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn real_photographs_train_resume_from_cached_features_and_are_learnt() {
    let encoder = tempfile::tempdir().unwrap();
    common::tiny_encoder(encoder.path());
    let work = tempfile::tempdir().unwrap();
    let photos = work.path().join("photos");
    copy_tree(&root().join("tests/fixtures/photos/images"), &photos);
    let config = GeneratorTrainConfig {
        steps: 60,
        batch: 6,
        warmup_steps: 10,
        checkpoint_every: 20,
        image_size: 32,
        learning_rate: 2e-3,
        // A small set to be learnt: no condition dropout or noise, and an average that
        // follows the weights closely.
        condition_dropout: 0.0,
        condition_noise: 0.0,
        ema_decay: 0.95,
        ..GeneratorTrainConfig::default()
    };
    // Every photograph is trained on: the set is to be learnt, not generalised from.
    let photo_job = |out: &Path, config: &GeneratorTrainConfig| GeneratorJob {
        heldout_fraction: 0.0,
        ..job(encoder.path(), Some(&photos), config, out)
    };

    // Stopped after 40 steps, resumed to the end: the same weights as one uninterrupted run.
    let resumed = work.path().join("resumed");
    let first = train_generator(&GeneratorJob {
        max_steps: Some(40),
        ..photo_job(&resumed, &config)
    })
    .unwrap();
    assert!(!first.complete);
    let features = resumed.join(FEATURES_FILE);
    let computed_at = std::fs::metadata(&features).unwrap().modified().unwrap();
    let rest = train_generator(&photo_job(&resumed, &config)).unwrap();
    assert!(rest.complete);
    assert_eq!(rest.resumed_from, 40);
    assert_eq!(
        std::fs::metadata(&features).unwrap().modified().unwrap(),
        computed_at,
        "the resumed run computed the features again"
    );
    let loss_of = |s: &brainmclip::train::generator::GeneratorSummary, step: usize| {
        s.losses.iter().find(|l| l.0 == step).unwrap().1
    };
    let short = work.path().join("short");
    let uninterrupted = train_generator(&photo_job(&short, &config)).unwrap();
    assert_eq!(loss_of(&rest, 59), loss_of(&uninterrupted, 59));
    assert_eq!(
        std::fs::read(resumed.join("generator.mpk")).unwrap(),
        std::fs::read(short.join("generator.mpk")).unwrap()
    );

    // Trained longer, the loss falls and the photographs are redrawn from their true features.
    let whole = work.path().join("whole");
    let long = train_generator(&photo_job(
        &whole,
        &GeneratorTrainConfig {
            steps: 500,
            checkpoint_every: 500,
            ..config.clone()
        },
    ))
    .unwrap();
    let mean = |range: std::ops::Range<usize>| {
        range.clone().map(|s| loss_of(&long, s)).sum::<f32>() / range.len() as f32
    };
    let (early, late) = (mean(0..30), mean(470..500));
    assert!(late < 0.5 * early, "loss {early} → {late}");
    let layers = Conditioner::load(encoder.path()).unwrap().layers;
    let folder = ImageFolder::prepare(&photos, encoder.path(), layers, &whole, 0.0, false).unwrap();
    assert_eq!(folder.len(), 6);
    assert_eq!(folder.id(0), "animals/chelsea");
    let eval = evaluate(&whole, encoder.path(), |_, size| {
        EvalImages::folder(&folder, &folder.train, size, 6).unwrap()
    });
    eprintln!("training photographs: {:?}", eval.few);
    assert!(eval.few.pixcorr.mean >= 0.9, "{:?}", eval.few);

    // One more photograph: the cache is made again for the new list, not mixed.
    let extra = photos.join("objects/coffee-again.jpg");
    std::fs::copy(photos.join("objects/coffee.jpg"), &extra).unwrap();
    let grown = ImageFolder::prepare(&photos, encoder.path(), layers, &whole, 0.0, false).unwrap();
    assert_eq!(grown.len(), 7);
}

#[test]
fn bad_image_folders_are_refused_with_the_file_named() {
    let encoder = tempfile::tempdir().unwrap();
    common::tiny_encoder(encoder.path());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");

    let empty = work.path().join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    let err = ImageFolder::prepare(&empty, encoder.path(), (1, 2), &out, 0.1, false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no .png or .jpg images") && err.contains("empty"),
        "{err}"
    );

    let twins = work.path().join("twins");
    std::fs::create_dir_all(&twins).unwrap();
    let photo = root().join("tests/fixtures/photos/images/people/astronaut.jpg");
    std::fs::copy(&photo, twins.join("a.jpg")).unwrap();
    image::open(&photo)
        .unwrap()
        .save(twins.join("a.png"))
        .unwrap();
    let err = ImageFolder::prepare(&twins, encoder.path(), (1, 2), &out, 0.1, false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("the same image id") && err.contains("a.png"),
        "{err}"
    );

    let broken = work.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(&photo, broken.join("good.jpg")).unwrap();
    std::fs::write(
        broken.join("cut.jpg"),
        &std::fs::read(&photo).unwrap()[..200],
    )
    .unwrap();
    let err = ImageFolder::prepare(&broken, encoder.path(), (1, 2), &out, 0.1, false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("cut.jpg") && err.contains("cannot read image"),
        "{err}"
    );
}

#[test]
fn the_real_size_presets_parse_into_the_documented_generators() {
    use brainmclip::model::generator::GeneratorConfig;
    let read = |name: &str| -> GeneratorTrainConfig {
        let path = root().join("calibration/generator").join(name);
        toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let at_256 = read("vitl14-256.toml");
    let real = GeneratorConfig::real_size();
    let arch = at_256.architecture.clone().unwrap();
    assert_eq!(at_256.image_size, real.image_size);
    assert_eq!(
        (
            arch.unshuffle,
            &arch.channels,
            arch.blocks,
            arch.attention,
            arch.groups,
            arch.embed_dim
        ),
        (
            real.unshuffle,
            &real.channels,
            real.blocks,
            real.attention,
            real.groups,
            real.embed_dim
        )
    );
    let at_128 = read("vitl14-128.toml");
    assert_eq!(at_128.image_size, 128);
    // Every level halves the side: 128 px unshuffled by 2 over four levels ends at 8x8.
    let a = at_128.architecture.unwrap();
    assert_eq!((128 / a.unshuffle) >> (a.channels.len() - 1), 8);
}
