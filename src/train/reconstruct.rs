//! `eval --images`: what reaches the image. A calibration's decodings of its held-out test
//! trials (the projector's, or the ridge baseline's) are drawn by a generator, and the drawings
//! are scored against the true stimulus images: PixCorr, SSIM, 2-way identification of their
//! CLIP embeddings against the true images' embeddings, and the layout (`layout.rs`) of
//! single-object images against the simulator's ground truth.
//!
//! A generator conditioned on detail tokens is only fed decodings of the same layers (checked
//! here); an embedding-only one takes the decoded embedding and nothing else. It trains
//! nothing; the decodings come from `evaluate.rs` and `ridge_baseline.rs`.

use std::collections::HashMap;
use std::path::Path;

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::module::Module;
use burn::prelude::*;
use serde::Serialize;

use super::calibrate::{file_err, CalibrateError, Response};
use super::generator_eval::to_rgb;
use super::layout::{locate_object, score_layouts, LayoutScore, ObjectLayout};
use crate::features::{list_images, FeatureSet};
use crate::metrics::{bootstrap, greyscale, pixcorr, ssim, two_way_identification, Estimate};
use crate::model::calibration::Decoded;
use crate::model::conditioner::{embed_images, Conditioner};
use crate::model::generator::files::GeneratorInfo;
use crate::model::generator::schedule::{sample, SamplerSettings};
use crate::model::generator::{Condition, UNet};

/// The steps and guidance reconstructions are drawn with (the live defaults).
pub const STEPS: usize = 4;
const CHUNK: usize = 25;

/// The true test images at one size: pixels, embeddings and (single-object ones) layouts.
pub struct TestImages {
    pub size: usize,
    /// Interleaved RGB 0..1, one per test response, in the responses' order.
    pub rgb: Vec<Vec<f32>>,
    pub embeddings: Vec<Vec<f32>>,
    pub layouts: Vec<Option<ObjectLayout>>,
}

impl TestImages {
    /// Reads each test response's stimulus from `stimuli_dir` (the BIDS `stimuli/`), resized to
    /// `size`, and embeds it through `conditioner`.
    pub fn read(
        stimuli_dir: &Path,
        test: &[Response],
        layouts: &HashMap<String, ObjectLayout>,
        conditioner: &Conditioner,
        size: usize,
    ) -> Result<TestImages, CalibrateError> {
        let files: HashMap<String, std::path::PathBuf> =
            list_images(stimuli_dir)?.into_iter().collect();
        let mut rgb = Vec::with_capacity(test.len());
        for r in test {
            let path = files.get(&r.stimulus).ok_or_else(|| {
                file_err(
                    stimuli_dir,
                    format!("no image file for test stimulus {}", r.stimulus),
                )
            })?;
            let (bytes, _, _) = crate::decode::retrieval::read_rgb8(path, Some(size as u32))
                .map_err(|e| file_err(path, e))?;
            rgb.push(bytes.iter().map(|&v| f32::from(v) / 255.0).collect());
        }
        let embeddings =
            embed_images(conditioner, &rgb, size).map_err(|e| file_err(stimuli_dir, e))?;
        Ok(TestImages {
            size,
            rgb,
            embeddings,
            layouts: test
                .iter()
                .map(|r| layouts.get(&r.stimulus).copied())
                .collect(),
        })
    }

    /// The layout measure on the true images themselves: the ceiling for any reconstruction.
    pub fn layout_ceiling(&self) -> LayoutScore {
        let (measured, truth) = self.measured_layouts(&self.rgb);
        score_layouts(&measured, &truth)
    }

    fn measured_layouts(
        &self,
        images: &[Vec<f32>],
    ) -> (Vec<Option<ObjectLayout>>, Vec<ObjectLayout>) {
        images
            .iter()
            .zip(&self.layouts)
            .filter_map(|(img, truth)| Some((locate_object(img, self.size), (*truth)?)))
            .unzip()
    }
}

/// One decoder + generator pair on one calibration's test trials.
#[derive(Debug, Clone, Serialize)]
pub struct ReconstructionReport {
    /// What the generator is conditioned on, in words.
    pub conditioning: String,
    pub generator_parameters: usize,
    pub images: usize,
    pub pixcorr: Estimate,
    pub ssim: Estimate,
    /// 2-way identification of the drawn images' CLIP embeddings against the true images'.
    pub identification: Estimate,
    pub layout: LayoutScore,
    /// Each single-object image's measured and true layout, for pooling over subjects.
    #[serde(skip)]
    pub layout_pairs: Vec<(Option<ObjectLayout>, ObjectLayout)>,
}

/// What a generator is conditioned on, in words.
pub fn conditioning(info: &GeneratorInfo) -> String {
    if info.generator.detail_tokens {
        format!(
            "tokens of blocks {}-{} + embedding",
            info.detail_layers.0, info.detail_layers.1
        )
    } else {
        "final embedding only".into()
    }
}

/// Whether `info`'s generator can draw decodings of a calibration whose detail targets are
/// `layers`, `tokens` x `width` and whose embedding has `dim` values; the reason when not.
pub fn compatible(
    info: &GeneratorInfo,
    layers: (usize, usize),
    tokens: usize,
    width: usize,
    dim: usize,
) -> Result<(), String> {
    let g = &info.generator;
    if g.semantic_dim != dim {
        return Err(format!(
            "its embedding has {} values, the calibration's {dim}",
            g.semantic_dim
        ));
    }
    if !g.detail_tokens {
        return Ok(());
    }
    if info.detail_layers != layers {
        return Err(format!(
            "it is conditioned on blocks {}-{}, the calibration predicts blocks {}-{}",
            info.detail_layers.0, info.detail_layers.1, layers.0, layers.1
        ));
    }
    if 1 + g.token_grid * g.token_grid != tokens || g.token_width != width {
        return Err(format!(
            "it takes {} tokens of {}, the calibration predicts {tokens} of {width}",
            1 + g.token_grid * g.token_grid,
            g.token_width
        ));
    }
    Ok(())
}

/// Draws every decoding (4 steps, no guidance, one noise seed for all generators) and scores
/// the drawings against `truth`. Returns the report and the drawn images (interleaved RGB).
pub fn reconstruct(
    model: &UNet<Flex>,
    info: &GeneratorInfo,
    conditioner: &Conditioner,
    decoded: &[Decoded],
    truth: &TestImages,
) -> Result<(ReconstructionReport, Vec<Vec<f32>>), CalibrateError> {
    let g = &info.generator;
    if g.image_size != truth.size || decoded.len() != truth.rgb.len() {
        return Err(CalibrateError::Invalid(format!(
            "{} decodings at {} px for {} test images at {} px",
            decoded.len(),
            g.image_size,
            truth.rgb.len(),
            truth.size
        )));
    }
    let token_count = 1 + g.token_grid * g.token_grid;
    let mut drawn = Vec::with_capacity(decoded.len());
    for chunk in decoded.chunks(CHUNK) {
        let n = chunk.len();
        let tokens: Vec<f32> = if g.detail_tokens {
            chunk
                .iter()
                .flat_map(|d| d.detail_tokens.iter().copied())
                .collect()
        } else {
            // Not read by an embedding-only generator.
            vec![0.0; n * token_count * g.token_width]
        };
        let semantic: Vec<f32> = chunk
            .iter()
            .flat_map(|d| d.embedding.iter().copied())
            .collect();
        let cond = Condition {
            tokens: Tensor::from_data(
                TensorData::new(tokens, [n, token_count, g.token_width]),
                &FlexDevice,
            ),
            semantic: Tensor::from_data(
                TensorData::new(semantic, [n, g.semantic_dim]),
                &FlexDevice,
            ),
        };
        let settings = SamplerSettings {
            steps: STEPS,
            guidance: 1.0,
            seed: 7,
            ..Default::default()
        };
        drawn.extend(to_rgb(sample(
            model,
            &cond,
            g.image_size,
            settings,
            &FlexDevice,
        )));
    }
    let size = truth.size;
    let pc: Vec<f64> = drawn
        .iter()
        .zip(&truth.rgb)
        .map(|(a, b)| pixcorr(a, b))
        .collect();
    let ss: Vec<f64> = drawn
        .iter()
        .zip(&truth.rgb)
        .map(|(a, b)| ssim(&greyscale(a), &greyscale(b), size, size))
        .collect();
    let embeddings = embed_images(conditioner, &drawn, size)
        .map_err(|e| CalibrateError::Invalid(e.to_string()))?;
    let (measured, layouts) = truth.measured_layouts(&drawn);
    let report = ReconstructionReport {
        conditioning: conditioning(info),
        generator_parameters: model.num_params(),
        images: drawn.len(),
        pixcorr: bootstrap(&pc, 1000, 11),
        ssim: bootstrap(&ss, 1000, 12),
        identification: bootstrap(
            &two_way_identification(&embeddings, &truth.embeddings),
            1000,
            13,
        ),
        layout: score_layouts(&measured, &layouts),
        layout_pairs: measured.into_iter().zip(layouts).collect(),
    };
    Ok((report, drawn))
}

/// Rows: the first 8 single-object test images; columns: the true image, then each drawing.
pub fn comparison_figure(truth: &TestImages, drawn: &[Vec<Vec<f32>>]) -> image::RgbImage {
    let rows: Vec<usize> = (0..truth.rgb.len())
        .filter(|&i| truth.layouts[i].is_some())
        .take(8)
        .collect();
    let (size, gap) = (truth.size as u32, 2u32);
    let columns = 1 + drawn.len() as u32;
    let mut canvas = image::RgbImage::from_pixel(
        columns * (size + gap) + gap,
        rows.len() as u32 * (size + gap) + gap,
        image::Rgb([255, 255, 255]),
    );
    for (r, &i) in rows.iter().enumerate() {
        let tiles = std::iter::once(&truth.rgb[i]).chain(drawn.iter().map(|d| &d[i]));
        for (c, tile) in tiles.enumerate() {
            for (p, rgb) in tile.chunks(3).enumerate() {
                let (x, y) = (p as u32 % size, p as u32 / size);
                let px = rgb
                    .iter()
                    .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
                let px: Vec<u8> = px.collect();
                canvas.put_pixel(
                    gap + c as u32 * (size + gap) + x,
                    gap + r as u32 * (size + gap) + y,
                    image::Rgb([px[0], px[1], px[2]]),
                );
            }
        }
    }
    canvas
}

/// The true features of each test response's stimulus, as decodings: what a generator draws
/// when nothing is lost before it. Responses without features are left out.
pub fn true_decodings(test: &[Response], features: &FeatureSet) -> Vec<Decoded> {
    let row_of = features.row_of();
    test.iter()
        .filter_map(|r| row_of.get(r.stimulus.as_str()))
        .map(|&r| Decoded {
            detail_tokens: features.detail_row(r).to_vec(),
            embedding: features.semantic_row(r).to_vec(),
        })
        .collect()
}
