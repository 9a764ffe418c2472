//! The image-level comparison of `eval --images`: the generators of its three conditions train
//! and load (embedding only; tokens of chosen layers), a generator only takes decodings of its
//! own layers, and drawings are scored against the truth: the shipped demo generator redraws
//! single-object images from their true features with their layout, and the same images drawn
//! from shuffled features lose it.

mod common;

use std::collections::HashMap;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use brainmclip::model::calibration::Decoded;
use brainmclip::model::conditioner::Conditioner;
use brainmclip::model::generator::files::load_generator;
use brainmclip::sim::stimuli::{render, to_rgb8, Stimulus, SIZES};
use brainmclip::train::calibrate::Response;
use brainmclip::train::encoder::heldout_stimuli;
use brainmclip::train::generator::{
    condition, train_generator, GeneratorJob, GeneratorTrainConfig,
};
use brainmclip::train::layout::ObjectLayout;
use brainmclip::train::reconstruct::{comparison_figure, compatible, reconstruct, TestImages};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `n` single-object held-out stimuli written as PNGs into `dir`, with their true layouts.
fn single_object_stimuli(
    dir: &std::path::Path,
    n: usize,
) -> (Vec<Stimulus>, HashMap<String, ObjectLayout>) {
    let stimuli: Vec<Stimulus> = heldout_stimuli(31, 8 * n)
        .into_iter()
        .filter(|s| s.objects.len() == 1)
        .take(n)
        .collect();
    assert_eq!(stimuli.len(), n);
    let mut layouts = HashMap::new();
    for s in &stimuli {
        let rgb = to_rgb8(&render(s, 128));
        image::RgbImage::from_raw(128, 128, rgb)
            .expect("an RGB buffer")
            .save(dir.join(format!("{}.png", s.id)))
            .expect("write a PNG");
        let o = &s.objects[0];
        layouts.insert(
            s.id.clone(),
            ObjectLayout {
                x: f64::from(o.x),
                y: f64::from(o.y),
                radius: f64::from(SIZES[o.size].1),
            },
        );
    }
    (stimuli, layouts)
}

fn decodings(conditioner: &Conditioner, stimuli: &[Stimulus]) -> Vec<Decoded> {
    let cond = condition(conditioner, stimuli).expect("features");
    let [n, t, w] = cond.tokens.dims();
    let tokens: Vec<f32> = cond.tokens.into_data().to_vec().expect("f32");
    let semantic: Vec<f32> = cond.semantic.into_data().to_vec().expect("f32");
    let d = semantic.len() / n;
    (0..n)
        .map(|i| Decoded {
            detail_tokens: tokens[i * t * w..(i + 1) * t * w].to_vec(),
            embedding: semantic[i * d..(i + 1) * d].to_vec(),
        })
        .collect()
}

#[test]
fn the_demo_generator_keeps_the_layout_of_true_features_and_shuffled_ones_lose_it() {
    let encoder = root().join("assets/demo-encoder");
    let (info, model) =
        load_generator::<Flex>(&root().join("assets/demo-generator"), &FlexDevice).expect("load");
    let conditioner = Conditioner::load(&encoder).expect("encoder");
    // Blocks 2-5 + embedding: takes the multi calibration's decodings, not the final-only's.
    assert_eq!(compatible(&info, (2, 5), 65, 128, 128), Ok(()));
    let refused = compatible(&info, (6, 6), 65, 128, 128).expect_err("other layers");
    assert!(
        refused.contains("blocks 2-5") && refused.contains("6-6"),
        "{refused}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let (stimuli, layouts) = single_object_stimuli(dir.path(), 24);
    let test: Vec<Response> = stimuli
        .iter()
        .map(|s| Response {
            stimulus: s.id.clone(),
            detail: Vec::new(),
            semantic: Vec::new(),
            repeats: 1,
        })
        .collect();
    let truth = TestImages::read(dir.path(), &test, &layouts, &conditioner, 64).expect("read");
    let ceiling = truth.layout_ceiling();
    assert!(ceiling.position_r.mean > 0.97, "{ceiling:?}");

    let true_features = decodings(&conditioner, &stimuli);
    let (good, drawn) =
        reconstruct(&model, &info, &conditioner, &true_features, &truth).expect("draw");
    assert_eq!((drawn.len(), good.images, good.layout.images), (24, 24, 24));
    assert!(good.pixcorr.mean > 0.85, "{good:?}");
    assert!(good.identification.mean > 0.95, "{good:?}");
    assert!(good.layout.position_r.mean > 0.9, "{good:?}");
    assert!(good.layout.position_error.mean < 0.06, "{good:?}");
    // The figure: 8 single-object rows, the true image then the drawing, 2 px apart.
    let figure = comparison_figure(&truth, std::slice::from_ref(&drawn));
    assert_eq!(figure.dimensions(), (2 * 66 + 2, 8 * 66 + 2));
    let first = |img: &[f32]| {
        img[..3]
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect::<Vec<u8>>()
    };
    assert_eq!(figure.get_pixel(2, 2).0.to_vec(), first(&truth.rgb[0]));
    assert_eq!(figure.get_pixel(2 + 66, 2).0.to_vec(), first(&drawn[0]));

    let mut shuffled = true_features.clone();
    shuffled.rotate_left(1);
    let (bad, _) = reconstruct(&model, &info, &conditioner, &shuffled, &truth).expect("draw");
    assert!(bad.pixcorr.mean < good.pixcorr.mean - 0.3, "{bad:?}");
    assert!(bad.layout.position_r.mean < 0.5, "{bad:?}");
    assert!(bad.layout.position_error.mean > 0.15, "{bad:?}");

    // Too few decodings for the images is refused, not silently zipped.
    let err = reconstruct(&model, &info, &conditioner, &true_features[1..], &truth)
        .expect_err("a short list");
    assert!(err.to_string().contains("23 decodings"), "{err}");
}

#[test]
fn comparison_generators_train_on_chosen_layers_or_the_embedding_alone() {
    let enc = tempfile::tempdir().expect("tempdir");
    common::tiny_encoder(enc.path());
    let base = GeneratorTrainConfig {
        steps: 4,
        batch: 4,
        warmup_steps: 1,
        checkpoint_every: 2,
        image_size: 16,
        ..GeneratorTrainConfig::default()
    };
    let train = |config: GeneratorTrainConfig, out: &std::path::Path| {
        train_generator(&GeneratorJob {
            encoder: enc.path().to_owned(),
            images: None,
            heldout_fraction: 0.05,
            config,
            init: None,
            out: out.to_owned(),
            max_steps: None,
            progress: false,
            device: Default::default(),
        })
    };
    let blocks = Conditioner::load(enc.path())
        .expect("encoder")
        .vision
        .vision_model
        .encoder
        .layers
        .len();

    let final_only = tempfile::tempdir().expect("tempdir");
    train(
        GeneratorTrainConfig {
            detail_layers: Some((blocks, blocks)),
            ..base.clone()
        },
        final_only.path(),
    )
    .expect("train on the final block");
    let (info, _) = load_generator::<Flex>(final_only.path(), &FlexDevice).expect("load");
    assert_eq!(info.detail_layers, (blocks, blocks));
    assert!(info.generator.detail_tokens);

    let embedding_only = tempfile::tempdir().expect("tempdir");
    let summary = train(
        GeneratorTrainConfig {
            detail_tokens: false,
            ..base.clone()
        },
        embedding_only.path(),
    )
    .expect("train on the embedding alone");
    let (info, model) = load_generator::<Flex>(embedding_only.path(), &FlexDevice).expect("load");
    assert!(!info.generator.detail_tokens);
    use burn::module::Module;
    assert_eq!(summary.parameters, model.num_params());
    // It takes any calibration's embedding, whatever its detail layers.
    let dim = info.generator.semantic_dim;
    assert_eq!(compatible(&info, (1, 1), 1, 1, dim), Ok(()));
    assert!(compatible(&info, (1, 1), 1, 1, dim + 1).is_err());

    let err = train(
        GeneratorTrainConfig {
            detail_layers: Some((2, blocks + 1)),
            ..base
        },
        tempfile::tempdir().expect("tempdir").path(),
    )
    .expect_err("layers past the encoder's blocks");
    assert!(err.to_string().contains(&format!("<= {blocks}")), "{err}");
}
