//! The encoder a generator is conditioned on: a Hugging Face CLIP vision tower with the detail
//! layers its features are averaged over, and the image embeddings of RGB images through it (as
//! the gallery, image targets and the scores use). It trains nothing and knows no simulator.

use std::path::{Path, PathBuf};

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;

use super::clip::ClipVision;
use super::generator::GeneratorConfig;
use super::load::{detail_layers_of, load_clip_vision};
use super::preprocess::ImageProcessor;

#[derive(Debug, thiserror::Error)]
pub enum ConditionerError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> ConditionerError {
    ConditionerError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// The encoder the generator is conditioned on, and its detail layers, on one device (the CPU
/// for training jobs; the live device for decoding).
pub struct Conditioner<B: Backend = Flex> {
    pub vision: ClipVision<B>,
    pub image_size: usize,
    pub layers: (usize, usize),
    pub device: B::Device,
}

impl Conditioner<Flex> {
    /// The vision tower in the Hugging Face CLIP folder `dir`, on the CPU; detail layers from
    /// its `config.json` (blocks 11-20 by default, as for ViT-L/14).
    pub fn load(dir: &Path) -> Result<Conditioner<Flex>, ConditionerError> {
        Conditioner::load_on(dir, FlexDevice)
    }
}

impl<B: Backend> Conditioner<B> {
    /// As `load`, on `device`.
    pub fn load_on(dir: &Path, device: B::Device) -> Result<Conditioner<B>, ConditionerError> {
        let loaded = load_clip_vision::<B>(dir, &device).map_err(|e| file_err(dir, e))?;
        let path = dir.join("config.json");
        let json: serde_json::Value = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| file_err(&path, "cannot read"))?;
        let blocks = loaded.config.num_hidden_layers;
        let layers = detail_layers_of(&json).unwrap_or((11.min(blocks), 20.min(blocks)));
        Ok(Conditioner {
            image_size: loaded.config.image_size,
            vision: loaded.model,
            layers,
            device,
        })
    }

    /// The same encoder with its detail features averaged over `layers` (1-based, inclusive)
    /// instead, e.g. the final block alone for a generator of the final-only ablation.
    pub fn with_layers(mut self, layers: (usize, usize)) -> Result<Self, ConditionerError> {
        let blocks = self.vision.vision_model.encoder.layers.len();
        if layers.0 < 1 || layers.0 > layers.1 || layers.1 > blocks {
            return Err(ConditionerError::Invalid(format!(
                "detail layers {}-{}: expected 1 <= first <= last <= {blocks} (the encoder's blocks)",
                layers.0, layers.1
            )));
        }
        self.layers = layers;
        Ok(self)
    }

    /// A generator configuration sized for this encoder's tokens and embedding.
    pub fn config_for(&self, image_size: usize) -> GeneratorConfig {
        let c = &self
            .vision
            .vision_model
            .embeddings
            .position_embedding
            .weight
            .dims();
        let width = c[1];
        let grid = ((c[0] - 1) as f64).sqrt().round() as usize;
        let dim = self
            .vision
            .visual_projection
            .as_ref()
            .map_or(width, |p| p.weight.dims()[1]);
        GeneratorConfig {
            image_size,
            ..GeneratorConfig::demo(width, grid, dim)
        }
    }
}

/// The encoder's image embedding of RGB images (0..1, `size`×`size`), through 8-bit PNG values
/// and CLIP preprocessing, as for any image.
pub fn embed_images<B: Backend>(
    conditioner: &Conditioner<B>,
    images: &[Vec<f32>],
    size: usize,
) -> Result<Vec<Vec<f32>>, ConditionerError> {
    let processor = ImageProcessor::clip(conditioner.image_size);
    let mut data = Vec::new();
    for img in images {
        let bytes: Vec<u8> = img.iter().map(|v| (v * 255.0).round() as u8).collect();
        let rgb = image::RgbImage::from_raw(size as u32, size as u32, bytes).ok_or_else(|| {
            ConditionerError::Invalid(format!(
                "an image of {} values is not {size}x{size} RGB",
                img.len()
            ))
        })?;
        data.extend(processor.process(&rgb));
    }
    let s = conditioner.image_size;
    let x = Tensor::<B, 4>::from_data(
        TensorData::new(data, [images.len(), 3, s, s]),
        &conditioner.device,
    );
    let out = conditioner.vision.forward(x, false);
    let e = out
        .image_embeds
        .ok_or_else(|| ConditionerError::Invalid("the encoder has no projection".into()))?;
    let d = e.dims()[1];
    let v: Vec<f32> = e.into_data().to_vec().unwrap_or_default();
    Ok(v.chunks(d).map(<[f32]>::to_vec).collect())
}
