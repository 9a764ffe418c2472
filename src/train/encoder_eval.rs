//! How good the demo encoder is, on held-out simulator images it never trained on:
//! text→image and image→text top-1 retrieval among 100 candidates, and a linear probe of the
//! object's position (single-object images) from the detail tokens (mean of the detail layers,
//! every token) against the same probe on the final image embedding.

use burn::prelude::*;
use serde::Serialize;

use super::encoder::{heldout_stimuli, pixels_tensor, EncoderTrainConfig, TrainError};
use super::probe::{ridge_probe_r2, Rows};
use crate::model::clip::ClipVision;
use crate::model::clip_text::ClipText;
use crate::model::loss::cosine_matrix;
use crate::model::targets::from_output;
use crate::model::tokenizer::ClipTokenizer;
use crate::sim::stimuli::Stimulus;

#[derive(Debug, Clone, Serialize)]
pub struct EncoderEval {
    pub candidates: usize,
    pub groups: usize,
    /// Fraction of captions whose own image is the most similar of the candidates.
    pub text_to_image_top1: f64,
    pub image_to_text_top1: f64,
    pub probe_train: usize,
    pub probe_test: usize,
    /// Test R² of the (x, y) position probe from the detail tokens.
    pub probe_detail_r2: f64,
    /// The same from the final image embedding.
    pub probe_final_r2: f64,
}

fn rows<B: Backend>(t: Tensor<B, 2>) -> Result<Vec<f32>, TrainError> {
    t.into_data()
        .to_vec::<f32>()
        .map_err(|e| TrainError::Invalid(format!("tensor data: {e:?}")))
}

fn top1_fraction(similarity: &[f32], n: usize, transpose: bool) -> usize {
    (0..n)
        .filter(|&i| {
            let at = |j: usize| {
                if transpose {
                    similarity[j * n + i]
                } else {
                    similarity[i * n + j]
                }
            };
            (0..n).all(|j| j == i || at(j) < at(i))
        })
        .count()
}

/// Top-1 retrieval both ways over `groups` groups of `candidates` held-out stimuli.
pub fn retrieval<B: Backend>(
    vision: &ClipVision<B>,
    text: &ClipText<B>,
    tokenizer: &ClipTokenizer,
    stimuli: &[Stimulus],
    candidates: usize,
    size: usize,
    device: &B::Device,
) -> Result<(f64, f64, usize), TrainError> {
    let (mut t2i, mut i2t, mut groups) = (0usize, 0usize, 0usize);
    for group in stimuli.chunks_exact(candidates) {
        let ids = group
            .iter()
            .map(|s| tokenizer.encode(&s.caption))
            .collect::<Result<Vec<_>, _>>()?;
        let image = vision
            .forward(pixels_tensor(group, size, device), false)
            .image_embeds;
        let caption = text.forward(&ids, device).text_embeds;
        let (Some(image), Some(caption)) = (image, caption) else {
            return Err(TrainError::Invalid(
                "retrieval needs both projections".into(),
            ));
        };
        // Rows: captions, columns: images.
        let sim = rows(cosine_matrix(caption, image))?;
        t2i += top1_fraction(&sim, candidates, false);
        i2t += top1_fraction(&sim, candidates, true);
        groups += 1;
    }
    let total = (groups * candidates).max(1) as f64;
    Ok((t2i as f64 / total, i2t as f64 / total, groups))
}

/// Detail tokens (flattened), final embeddings and object positions, one row per image.
type ProbeFeatures = (Vec<f32>, Vec<f32>, Vec<[f64; 2]>);

/// Detail-token and final-embedding features of single-object images, and their positions.
fn probe_features<B: Backend>(
    vision: &ClipVision<B>,
    stimuli: &[Stimulus],
    config: &EncoderTrainConfig,
    device: &B::Device,
) -> Result<ProbeFeatures, TrainError> {
    let (mut detail, mut semantic) = (Vec::new(), Vec::new());
    for chunk in stimuli.chunks(100) {
        let out = vision.forward(pixels_tensor(chunk, config.image_size, device), true);
        let targets = from_output(out, config.detail_layers.0, config.detail_layers.1)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        let [b, t, h] = targets.detail.dims();
        detail.extend(rows(targets.detail.reshape([b, t * h]))?);
        semantic.extend(rows(targets.semantic)?);
    }
    let positions = stimuli
        .iter()
        .map(|s| [s.objects[0].x as f64, s.objects[0].y as f64])
        .collect();
    Ok((detail, semantic, positions))
}

/// Every figure of the demo encoder's report.
pub fn evaluate<B: Backend>(
    vision: &ClipVision<B>,
    text: &ClipText<B>,
    tokenizer: &ClipTokenizer,
    config: &EncoderTrainConfig,
    device: &B::Device,
) -> Result<EncoderEval, TrainError> {
    let candidates = 100;
    let pool = heldout_stimuli(config.seed, 6000);
    let (t2i, i2t, groups) = retrieval(
        vision,
        text,
        tokenizer,
        &pool[..1000],
        candidates,
        config.image_size,
        device,
    )?;
    let (probe_train, probe_test) = (1000, 400);
    let single: Vec<Stimulus> = pool[1000..]
        .iter()
        .filter(|s| s.objects.len() == 1)
        .take(probe_train + probe_test)
        .cloned()
        .collect();
    let (detail, semantic, positions) = probe_features(vision, &single, config, device)?;
    let n = single.len().max(1);
    let probe_detail_r2 = ridge_probe_r2(
        &Rows {
            data: &detail,
            cols: detail.len() / n,
        },
        &positions,
        probe_train,
    );
    let probe_final_r2 = ridge_probe_r2(
        &Rows {
            data: &semantic,
            cols: semantic.len() / n,
        },
        &positions,
        probe_train,
    );
    Ok(EncoderEval {
        candidates,
        groups,
        text_to_image_top1: t2i,
        image_to_text_top1: i2t,
        probe_train,
        probe_test: single.len().saturating_sub(probe_train),
        probe_detail_r2,
        probe_final_r2,
    })
}
