//! Our CLIP vision tower against the reference implementation (transformers): tiny models with
//! perturbed weights, made by `tests/fixtures/clip/make_fixtures.py`, and the outputs transformers
//! computed for the same preprocessed images.

use std::path::{Path, PathBuf};

use brainmclip::model::load::{load_clip_text, load_clip_vision};
use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
        .unwrap()
}

fn flatten(v: &Value, out: &mut Vec<f32>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
        other => panic!("unexpected {other}"),
    }
}

fn values(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    flatten(v, &mut out);
    out
}

/// The two preprocessed reference images as a [2, 3, 32, 32] batch.
fn pixels(r: &Value, device: &FlexDevice) -> Tensor<Flex, 4> {
    let mut data = values(&r["preprocess"]["images"]["a.png"]["pixel_values"]);
    data.extend(values(&r["preprocess"]["images"]["b.png"]["pixel_values"]));
    Tensor::from_data(TensorData::new(data, [2, 3, 32, 32]), device)
}

fn assert_close<const D: usize>(ours: Tensor<Flex, D>, theirs: &Value, what: &str) {
    let ours: Vec<f32> = ours.into_data().to_vec().unwrap();
    let theirs = values(theirs);
    assert_eq!(ours.len(), theirs.len(), "{what}: sizes");
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 2e-5, "{what}: max abs difference {worst}");
}

#[test]
fn vision_tower_matches_transformers() {
    let device = FlexDevice;
    let r = reference();
    let loaded = load_clip_vision::<Flex>(&fixtures().join("tiny-clip"), &device).unwrap();
    assert!(loaded.model.visual_projection.is_some());
    let out = loaded.model.forward(pixels(&r, &device), true);
    let v = &r["vision"];
    assert_eq!(out.hidden_states.len(), 5);
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(
            h.clone(),
            &v["hidden_states"][i],
            &format!("hidden_states[{i}]"),
        );
    }
    assert_close(
        out.last_hidden_state,
        &v["last_hidden_state"],
        "last_hidden_state",
    );
    assert_close(out.pooler_output, &v["pooler_output"], "pooler_output");
    assert_close(
        out.image_embeds.unwrap(),
        &v["image_embeds"],
        "image_embeds",
    );
}

#[test]
fn vision_with_projection_and_gelu_variants_load_and_match() {
    let device = FlexDevice;
    let r = reference();
    let with_projection =
        load_clip_vision::<Flex>(&fixtures().join("tiny-clip-vision"), &device).unwrap();
    let out = with_projection.model.forward(pixels(&r, &device), false);
    assert_close(
        out.image_embeds.unwrap(),
        &r["vision_with_projection"]["image_embeds"],
        "with projection: image_embeds",
    );
    // A bare CLIPVisionModel saved by transformers 5 (no `vision_model.` prefix), exact gelu.
    let gelu = load_clip_vision::<Flex>(&fixtures().join("tiny-clip-gelu"), &device).unwrap();
    assert!(gelu.model.visual_projection.is_none());
    let out = gelu.model.forward(pixels(&r, &device), false);
    assert_close(
        out.last_hidden_state,
        &r["vision_gelu"]["last_hidden_state"],
        "gelu: last_hidden_state",
    );
    assert_close(
        out.pooler_output,
        &r["vision_gelu"]["pooler_output"],
        "gelu: pooler_output",
    );
}

#[test]
fn half_precision_weights_are_cast_to_f32_as_they_load() {
    let device = FlexDevice;
    let r = reference();
    let loaded = load_clip_vision::<Flex>(&fixtures().join("tiny-clip-f16"), &device).unwrap();
    let out = loaded.model.forward(pixels(&r, &device), false);
    assert_close(
        out.last_hidden_state,
        &r["vision_f16"]["last_hidden_state"],
        "f16: last_hidden_state",
    );
    assert_close(
        out.image_embeds.unwrap(),
        &r["vision_f16"]["image_embeds"],
        "f16: image_embeds",
    );
}

#[test]
fn text_tower_matches_transformers() {
    let device = FlexDevice;
    let r = reference();
    let t = &r["text"];
    let loaded = load_clip_text::<Flex>(&fixtures().join("tiny-clip"), &device).unwrap();
    let ids: Vec<Vec<u32>> = t["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let out = loaded.model.forward(&ids, &device);
    assert_close(out.pooler_output, &t["pooler_output"], "text pooler_output");
    assert_close(out.text_embeds.unwrap(), &t["text_embeds"], "text_embeds");
    // Real tokens (up to each end-of-text) match; padding positions are not compared.
    let ours: Vec<f32> = out.last_hidden_state.into_data().to_vec().unwrap();
    let theirs = values(&t["last_hidden_state"]);
    let (len, h) = (ids[0].len(), 32);
    for (row, eos) in t["eos_positions"].as_array().unwrap().iter().enumerate() {
        for pos in 0..=eos.as_u64().unwrap() as usize {
            for k in 0..h {
                let i = (row * len + pos) * h + k;
                assert!(
                    (ours[i] - theirs[i]).abs() < 2e-5,
                    "text hidden state row {row} pos {pos}"
                );
            }
        }
    }
}

#[test]
fn preprocessing_follows_clip_image_processor() {
    let r = reference();
    let processor = brainmclip::model::preprocess::ImageProcessor::clip(32);
    for name in ["a.png", "b.png"] {
        let image = image::open(fixtures().join("images").join(name))
            .unwrap()
            .to_rgb8();
        let expected = &r["preprocess"]["images"][name];
        let (w, h) = processor.resized_size(image.width(), image.height());
        let hw: Vec<u64> = expected["resized_hw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!((h as u64, w as u64), (hw[0], hw[1]), "{name}: resized size");
        let ours = processor.process(&image);
        let theirs = values(&expected["pixel_values"]);
        assert_eq!(ours.len(), theirs.len());
        // Differences in 8-bit steps (one step is 1/255/std in normalised units).
        let steps: Vec<f32> = ours
            .iter()
            .zip(&theirs)
            .enumerate()
            .map(|(i, (a, b))| {
                (a - b).abs() * 255.0 * brainmclip::model::preprocess::CLIP_STD[i / (32 * 32)]
            })
            .collect();
        let mut sorted = steps.clone();
        sorted.sort_by(f32::total_cmp);
        let max = sorted[sorted.len() - 1];
        let p99 = sorted[sorted.len() * 99 / 100];
        let mean = steps.iter().sum::<f32>() / steps.len() as f32;
        eprintln!("{name}: resampling differs from PIL by {mean:.3} 8-bit steps on average, {p99:.1} at the 99th percentile, {max:.1} at most");
        // Kernel edge handling differs at one-pixel features near the border: a few pixels only.
        assert!(
            mean < 0.5 && p99 <= 3.0 && max <= 32.0,
            "{name}: mean {mean}, p99 {p99}, max {max} steps"
        );
    }
}

#[test]
fn detail_and_semantic_targets() {
    let device = FlexDevice;
    let r = reference();
    let loaded = load_clip_vision::<Flex>(&fixtures().join("tiny-clip"), &device).unwrap();
    let t = brainmclip::model::targets::targets(&loaded.model, pixels(&r, &device), 2, 3).unwrap();
    // The mean of transformers' hidden_states[2] and [3] (blocks 2 and 3, 1-based).
    let (h2, h3) = (
        values(&r["vision"]["hidden_states"][2]),
        values(&r["vision"]["hidden_states"][3]),
    );
    let expected: Vec<f32> = h2.iter().zip(&h3).map(|(a, b)| (a + b) / 2.0).collect();
    let ours: Vec<f32> = t.detail.into_data().to_vec().unwrap();
    assert_eq!(ours.len(), 2 * 17 * 32);
    assert!(ours
        .iter()
        .zip(&expected)
        .all(|(a, b)| (a - b).abs() < 2e-5));
    assert_close(t.semantic, &r["vision"]["image_embeds"], "semantic target");
    let err = brainmclip::model::targets::targets(&loaded.model, pixels(&r, &device), 3, 5)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("3..=5") && err.contains("<= 4"), "{err}");
}

#[test]
fn features_of_an_image_folder_are_batched_resumable_and_match_the_model() {
    use brainmclip::features::{compute_features, FeatureJob};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("features.safetensors");
    let job = FeatureJob {
        device: brainmclip::model::device::ComputeDevice::Cpu,
        encoder: fixtures().join("tiny-clip"),
        images: fixtures().join("images"),
        out: out.clone(),
        layers: (2, 3),
        batch: 1,
        max_batches: Some(1),
        progress: false,
    };
    let first = compute_features(&job).unwrap();
    assert_eq!((first.computed_batches, first.complete), (1, false));
    assert!(!out.exists());
    let second = compute_features(&FeatureJob {
        device: brainmclip::model::device::ComputeDevice::Cpu,
        max_batches: None,
        ..job
    })
    .unwrap();
    assert_eq!(
        (
            second.reused_batches,
            second.computed_batches,
            second.complete
        ),
        (1, 1, true)
    );

    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["ids"], "[\"a\",\"b\"]");
    assert_eq!(meta["detail_layers"], "2-3");
    assert_eq!(st.tensor("detail").unwrap().shape(), &[2, 17, 32]);
    let semantic: Vec<f32> = st
        .tensor("semantic")
        .unwrap()
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // Our preprocessing differs from PIL's by a fraction of an 8-bit step: the embeddings differ
    // from transformers' by little.
    let theirs = values(&r_image_embeds());
    let worst = semantic
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 0.05,
        "semantic features differ from transformers' embeddings by {worst}"
    );
}

fn r_image_embeds() -> Value {
    reference()["vision"]["image_embeds"].clone()
}

#[test]
fn captions_tokenise_as_transformers_does_and_encode_to_its_embeddings() {
    use brainmclip::model::tokenizer::ClipTokenizer;
    let r = reference();
    let t = &r["text"];
    let tokenizer =
        ClipTokenizer::from_file(&fixtures().join("tiny-clip/tokenizer.json"), 16, 207, 207)
            .unwrap();
    for (caption, expected) in t["captions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(t["input_ids"].as_array().unwrap())
    {
        let ids = tokenizer.encode(caption.as_str().unwrap()).unwrap();
        let expected: Vec<u32> = expected
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, expected, "{caption}");
    }
    // Too long for the context: truncated with end-of-text kept last.
    let long = tokenizer.encode(&"a red star ".repeat(20)).unwrap();
    assert_eq!((long.len(), long[0], long[15]), (16, 206, 207));
    let device = FlexDevice;
    let text = load_clip_text::<Flex>(&fixtures().join("tiny-clip"), &device).unwrap();
    let captions: Vec<Vec<u32>> = t["captions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| tokenizer.encode(c.as_str().unwrap()).unwrap())
        .collect();
    let out = text.model.forward(&captions, &device);
    assert_close(
        out.text_embeds.unwrap(),
        &t["text_embeds"],
        "text_embeds from captions",
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("tiny-clip/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    // Weights of a model with fewer layers than the config says.
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tiny-clip/config.json")).unwrap(),
    )
    .unwrap();
    let mut bigger = config.clone();
    bigger["vision_config"]["num_hidden_layers"] = 5.into();
    std::fs::write(dir.path().join("config.json"), bigger.to_string()).unwrap();
    std::fs::copy(
        fixtures().join("tiny-clip/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let err = load_clip_vision::<Flex>(dir.path(), &FlexDevice)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("layers.4"),
        "{err}"
    );
}
