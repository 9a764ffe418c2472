//! The demo encoder's training job: saved as a Hugging Face folder that our loader reads back to
//! the same outputs; a resumed run equals an uninterrupted one; the loss goes down.

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;

use brainmclip::model::load::{load_clip_text, load_clip_vision};
use brainmclip::model::save::save_clip;
use brainmclip::train::encoder::{
    demo_tokenizer, heldout_stimuli, pixels_tensor, train_encoder, EncoderJob, EncoderTrainConfig,
};

fn tiny() -> EncoderTrainConfig {
    EncoderTrainConfig {
        steps: 6,
        batch: 8,
        warmup_steps: 2,
        checkpoint_every: 2,
        image_size: 32,
        width: 32,
        vision_layers: 3,
        text_width: 32,
        text_layers: 2,
        heads: 2,
        projection_dim: 16,
        detail_layers: (1, 2),
        ..EncoderTrainConfig::default()
    }
}

fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().expect("f32")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn saved_folder_loads_back_to_the_same_outputs() {
    let config = tiny();
    let device = FlexDevice;
    let model = config.init::<Flex>(&device);
    let stimuli = heldout_stimuli(1, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = demo_tokenizer(dir.path(), config.context).expect("tokenizer");
    let ids: Vec<Vec<u32>> = stimuli
        .iter()
        .map(|s| tokenizer.encode(&s.caption).expect("encode"))
        .collect();
    let pixels = || pixels_tensor::<Flex>(&stimuli, config.image_size, &device);
    let want_image = values(
        model
            .vision
            .forward(pixels(), false)
            .image_embeds
            .expect("proj"),
    );
    let want_text = values(model.text.forward(&ids, &device).text_embeds.expect("proj"));
    for (half, tolerance) in [(false, 1e-6f32), (true, 2e-2)] {
        let out = dir.path().join(if half { "f16" } else { "f32" });
        save_clip(&model, &config.hf_config(), &out, half).expect("save");
        let vision = load_clip_vision::<Flex>(&out, &device).expect("load vision");
        let text = load_clip_text::<Flex>(&out, &device).expect("load text");
        assert_eq!(vision.config, config.vision());
        let got_image = values(
            vision
                .model
                .forward(pixels(), false)
                .image_embeds
                .expect("proj"),
        );
        let got_text = values(text.model.forward(&ids, &device).text_embeds.expect("proj"));
        let (di, dt) = (
            max_diff(&got_image, &want_image),
            max_diff(&got_text, &want_text),
        );
        assert!(di <= tolerance && dt <= tolerance, "half {half}: {di} {dt}");
        // The file is a Hugging Face CLIPModel: its names are transformers' names.
        let bytes = std::fs::read(out.join("model.safetensors")).expect("read");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let names: Vec<String> = st.names().into_iter().map(String::from).collect();
        for name in [
            "vision_model.embeddings.class_embedding",
            "vision_model.pre_layrnorm.weight",
            "vision_model.encoder.layers.2.mlp.fc2.bias",
            "text_model.final_layer_norm.bias",
            "text_projection.weight",
            "visual_projection.weight",
            "logit_scale",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
        }
        let dtype = st
            .tensor("visual_projection.weight")
            .expect("tensor")
            .dtype();
        assert_eq!(
            dtype,
            if half {
                safetensors::Dtype::F16
            } else {
                safetensors::Dtype::F32
            }
        );
    }
}

#[test]
fn resumed_training_equals_uninterrupted_and_lowers_the_loss() {
    let config = EncoderTrainConfig {
        steps: 24,
        checkpoint_every: 4,
        learning_rate: 3e-3,
        ..tiny()
    };
    let whole = tempfile::tempdir().expect("tempdir");
    let split = tempfile::tempdir().expect("tempdir");
    let job = |out: &std::path::Path, max_steps| EncoderJob {
        config: config.clone(),
        out: out.to_owned(),
        max_steps,
        progress: false,
    };
    let full = train_encoder(&job(whole.path(), None)).expect("train");
    assert!(full.complete && full.steps_done == 24);
    let first = train_encoder(&job(split.path(), Some(10))).expect("first part");
    assert!(!first.complete && first.steps_done == 10);
    assert!(!split.path().join("model.safetensors").exists());
    let second = train_encoder(&job(split.path(), None)).expect("resume");
    assert_eq!(second.resumed_from, 10);
    assert!(second.complete);
    let a: Vec<f32> = full.losses.iter().map(|l| l.1).collect();
    let b: Vec<f32> = second.losses.iter().map(|l| l.1).collect();
    assert!(max_diff(&a, &b) < 1e-4, "{a:?}\n{b:?}");
    // Batches of 8: chance-level loss is ln 8 = 2.08; the last steps must be well below it.
    let head: f32 = a[..4].iter().sum::<f32>() / 4.0;
    let tail: f32 = a[a.len() - 4..].iter().sum::<f32>() / 4.0;
    assert!(tail < head - 0.3, "loss {head} -> {tail}");
    // A checkpoint from another config is refused, naming the file.
    let other = EncoderJob {
        config: EncoderTrainConfig {
            seed: 99,
            ..config.clone()
        },
        out: split.path().to_owned(),
        max_steps: None,
        progress: false,
    };
    let err = train_encoder(&other).expect_err("refused").to_string();
    assert!(
        err.contains("state.json") && err.contains("another training config"),
        "{err}"
    );
}
