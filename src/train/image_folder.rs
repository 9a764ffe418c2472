//! The generator's training images from a folder tree (`train-generator --images DIR`): any
//! depth of JPEG/PNG files, a held-out split fixed by a hash of each image's id (adding images
//! never moves an old one across), each image resized (shortest side) and centre-cropped to
//! the generator's size, and the encoder's features computed once into the output folder by
//! `features` (resumable; recomputed when the folder, encoder or layers change). Batches are
//! drawn from seeded permutations of the training split, so a resumed run draws exactly what
//! an uninterrupted one would.
//!
//! It is not the simulator's stream of images (`encoder::training_stimuli`), and it keeps no
//! pixels in memory: each step reads its batch from disk (a few ms per image against a
//! training step of a second).

use std::path::{Path, PathBuf};

use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::degrade::FeatureStats;
use super::generator::{file_err, GeneratorError};
use crate::features::{compute_features, list_images, read_features, FeatureJob, FeatureSet};
use crate::model::device::ComputeDevice;
use crate::model::generator::Condition;
use crate::model::preprocess::ImageProcessor;

/// The cached features, inside the generator's output folder.
pub const FEATURES_FILE: &str = "features.safetensors";

/// An image folder ready to train on.
pub struct ImageFolder {
    pub root: PathBuf,
    /// (id, path) of every image, sorted by id; `features` has the same rows.
    images: Vec<(String, PathBuf)>,
    features: FeatureSet,
    /// Rows of the training and held-out images.
    pub train: Vec<usize>,
    pub heldout: Vec<usize>,
}

/// How an image's id decides its split: FNV-1a of the id, finished with splitmix64's mixer
/// (FNV's top bits barely move between ids that differ in their last characters), as a
/// fraction of 2^64.
fn split_point(id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h as f64 / u64::MAX as f64
}

impl ImageFolder {
    /// Lists `root`, splits it (`heldout_fraction` of the images, at least one when there are
    /// two or more) and computes or reuses the encoder's features in `out/features.safetensors`.
    pub fn prepare(
        root: &Path,
        encoder: &Path,
        layers: (usize, usize),
        out: &Path,
        heldout_fraction: f64,
        progress: bool,
    ) -> Result<ImageFolder, GeneratorError> {
        if !(0.0..1.0).contains(&heldout_fraction) {
            return Err(GeneratorError::Invalid(format!(
                "the held-out fraction must be in [0, 1), not {heldout_fraction}"
            )));
        }
        let images = list_images(root).map_err(|e| GeneratorError::Invalid(e.to_string()))?;
        std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
        let path = out.join(FEATURES_FILE);
        let wanted: Vec<&str> = images.iter().map(|(id, _)| id.as_str()).collect();
        let layer_text = format!("{}-{}", layers.0, layers.1);
        let cached = read_features(&path).ok().filter(|f| {
            f.ids == wanted
                && f.detail_layers == layer_text
                && f.encoder == encoder.display().to_string()
        });
        let features = match cached {
            Some(f) => f,
            None => {
                tracing::info!(
                    "computing {}'s features of {} images into {}",
                    encoder.display(),
                    images.len(),
                    path.display()
                );
                compute_features(&FeatureJob {
                    encoder: encoder.to_owned(),
                    images: root.to_owned(),
                    out: path.clone(),
                    layers,
                    batch: 32,
                    max_batches: None,
                    progress,
                    device: ComputeDevice::Cpu,
                })
                .map_err(|e| GeneratorError::Invalid(e.to_string()))?;
                read_features(&path).map_err(|e| GeneratorError::Invalid(e.to_string()))?
            }
        };
        if features.ids != wanted {
            return Err(file_err(
                &path,
                "its image ids do not match the folder's (changed while computing?)",
            ));
        }
        let (mut train, mut heldout): (Vec<usize>, Vec<usize>) =
            (0..images.len()).partition(|&i| split_point(&images[i].0) >= heldout_fraction);
        if heldout.is_empty() && heldout_fraction > 0.0 && images.len() >= 2 {
            // A small folder still keeps one image out: the one the hash puts lowest.
            let lowest = (0..images.len())
                .min_by(|&a, &b| split_point(&images[a].0).total_cmp(&split_point(&images[b].0)))
                .unwrap_or(0);
            train.retain(|&i| i != lowest);
            heldout.push(lowest);
        }
        if train.is_empty() {
            return Err(file_err(root, "no image is left to train on"));
        }
        Ok(ImageFolder {
            root: root.to_owned(),
            images,
            features,
            train,
            heldout,
        })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn id(&self, row: usize) -> &str {
        &self.images[row].0
    }

    /// The training rows of step `step`: position `step * batch ..` in a sequence of
    /// permutations of the training split, one permutation per epoch, each from the seed.
    pub fn batch_rows(&self, seed: u64, step: usize, batch: usize) -> Vec<usize> {
        let n = self.train.len();
        let start = step * batch;
        let mut rows = Vec::with_capacity(batch);
        let mut epoch = usize::MAX;
        let mut order: Vec<usize> = Vec::new();
        for k in start..start + batch {
            if k / n != epoch {
                epoch = k / n;
                order = self.train.clone();
                let mut rng = ChaCha8Rng::seed_from_u64(
                    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64,
                );
                order.shuffle(&mut rng);
            }
            rows.push(order[k % n]);
        }
        rows
    }

    /// The cached features of `rows`, as the generator's condition.
    pub fn condition(&self, rows: &[usize]) -> Condition<Flex> {
        let f = &self.features;
        let detail: Vec<f32> = rows
            .iter()
            .flat_map(|&r| f.detail_row(r).iter().copied())
            .collect();
        let semantic: Vec<f32> = rows
            .iter()
            .flat_map(|&r| f.semantic_row(r).iter().copied())
            .collect();
        Condition {
            tokens: Tensor::from_data(
                TensorData::new(detail, [rows.len(), f.tokens, f.width]),
                &FlexDevice,
            ),
            semantic: Tensor::from_data(
                TensorData::new(semantic, [rows.len(), f.dim]),
                &FlexDevice,
            ),
        }
    }

    /// Image `row` at `size`×`size`: shortest side resized, centre-cropped; channels first,
    /// 0..1.
    pub fn pixels(&self, row: usize, size: usize) -> Result<Vec<f32>, GeneratorError> {
        let path = &self.images[row].1;
        let image = image::open(path)
            .map_err(|e| file_err(path, format!("cannot read image: {e}")))?
            .to_rgb8();
        let plain = ImageProcessor {
            mean: [0.0; 3],
            std: [1.0; 3],
            ..ImageProcessor::clip(size)
        };
        Ok(plain.process(&image))
    }

    /// Images of `rows` in -1..1 as [b, 3, s, s].
    pub fn image_tensor<B: Backend>(
        &self,
        rows: &[usize],
        size: usize,
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, GeneratorError> {
        let mut data = Vec::with_capacity(rows.len() * 3 * size * size);
        for &r in rows {
            data.extend(self.pixels(r, size)?.into_iter().map(|v| v * 2.0 - 1.0));
        }
        Ok(Tensor::from_data(
            TensorData::new(data, [rows.len(), 3, size, size]),
            device,
        ))
    }

    /// Per-position mean and overall SD of the training images' features (for brain-like
    /// degradation).
    pub fn stats(&self) -> FeatureStats {
        let f = &self.features;
        let tokens: Vec<f32> = self
            .train
            .iter()
            .flat_map(|&r| f.detail_row(r).iter().copied())
            .collect();
        let semantic: Vec<f32> = self
            .train
            .iter()
            .flat_map(|&r| f.semantic_row(r).iter().copied())
            .collect();
        FeatureStats::from_rows(&tokens, &semantic, self.train.len())
    }
}

#[cfg(test)]
mod tests {
    use super::split_point;

    #[test]
    fn the_split_point_is_spread_over_zero_to_one() {
        let points: Vec<f64> = (0..2000)
            .map(|i| split_point(&format!("img{i:05}")))
            .collect();
        let below = points.iter().filter(|&&p| p < 0.1).count();
        // Binomial(2000, 0.1): 200 ± 13.4; six SDs either side.
        assert!((120..280).contains(&below), "{below} of 2000 below 0.1");
        assert!(points.iter().all(|p| (0.0..=1.0).contains(p)));
    }
}
