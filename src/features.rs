//! `brainmclip features`: CLIP targets for a folder of images, the detail target (mean hidden
//! states of blocks a..b) and the semantic target (image embedding) of each, into one
//! safetensors file with the image ids in its metadata. Batched, with a progress bar, and
//! resumable: each batch is written to `<out>.parts/` as it is done, and a rerun skips the
//! batches already there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::model::device::{live_device, ComputeDevice, LiveBackend};
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::model::load::{load_clip_vision, LoadError};
use crate::model::preprocess::ImageProcessor;
use crate::model::targets::{targets, TargetError};

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

pub struct FeatureJob {
    pub encoder: PathBuf,
    pub images: PathBuf,
    pub out: PathBuf,
    /// Detail layers, 1-based, inclusive.
    pub layers: (usize, usize),
    pub batch: usize,
    /// Compute at most this many new batches, then stop (a later run resumes).
    pub max_batches: Option<usize>,
    pub progress: bool,
    /// Where the vision tower runs (NSD's 73 000 images through ViT-L/14: ~32 h on two CPU
    /// cores, minutes on a GPU).
    pub device: ComputeDevice,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSummary {
    pub images: usize,
    pub computed_batches: usize,
    pub reused_batches: usize,
    /// False when `max_batches` stopped the run before the end.
    pub complete: bool,
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> FeatureError {
    FeatureError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Image files (png, jpg, jpeg) in a folder tree, sorted by id; the id is the path below `dir`
/// without its extension, `/`-separated (the file stem in a flat folder). Hidden entries are
/// skipped; two files with one id (`a.png`, `a.jpg`) are an error, as their features would mix.
pub fn list_images(dir: &Path) -> Result<Vec<(String, PathBuf)>, FeatureError> {
    let mut out = Vec::new();
    collect_images(dir, "", 0, &mut out)?;
    out.sort();
    if out.is_empty() {
        return Err(file_err(dir, "no .png or .jpg images"));
    }
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(file_err(
            &w[1].1,
            format!("the same image id as {}: rename one", w[0].1.display()),
        ));
    }
    Ok(out)
}

/// Folders deeper than this are not image sets but links looping back.
const MAX_DEPTH: usize = 16;

fn collect_images(
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), FeatureError> {
    if depth > MAX_DEPTH {
        return Err(file_err(
            dir,
            format!("more than {MAX_DEPTH} folders deep (a link loop?)"),
        ));
    }
    for entry in std::fs::read_dir(dir).map_err(|e| file_err(dir, e))? {
        let path = entry.map_err(|e| file_err(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_images(&path, &format!("{prefix}{name}/"), depth + 1, out)?;
            continue;
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            out.push((format!("{prefix}{stem}"), path));
        }
    }
    Ok(())
}

fn tensor_bytes<B: Backend, const D: usize>(
    t: Tensor<B, D>,
) -> Result<(Vec<usize>, Vec<u8>), FeatureError> {
    let shape = t.dims().to_vec();
    let data: Vec<f32> = t
        .into_data()
        .to_vec()
        .map_err(|e| file_err(Path::new("features"), format!("{e:?}")))?;
    Ok((shape, data.iter().flat_map(|v| v.to_le_bytes()).collect()))
}

pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &[(&str, Vec<usize>, Vec<u8>)],
    metadata: HashMap<String, String>,
) -> Result<(), FeatureError> {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (*name, v))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| file_err(path, e))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| file_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

pub fn compute_features(job: &FeatureJob) -> Result<FeatureSummary, FeatureError> {
    let device = live_device(job.device);
    let loaded = load_clip_vision::<LiveBackend>(&job.encoder, &device)?;
    let processor = ImageProcessor::clip(loaded.config.image_size);
    let images = list_images(&job.images)?;
    let parts = PathBuf::from(format!("{}.parts", job.out.display()));
    std::fs::create_dir_all(&parts).map_err(|e| file_err(&parts, e))?;
    // Shards are numbered by batch: they belong to one list of images, encoder and layers. A
    // changed folder starts over rather than mixing rows of different images.
    let manifest = parts.join("manifest.json");
    let this_list = serde_json::json!({
        "ids": images.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        "encoder": job.encoder.display().to_string(),
        "layers": [job.layers.0, job.layers.1],
        "batch": job.batch.max(1),
    });
    let earlier = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if earlier.as_ref() != Some(&this_list) {
        if earlier.is_some() {
            tracing::warn!(
                "{}: made for other images or settings; computing again",
                parts.display()
            );
        }
        std::fs::remove_dir_all(&parts).map_err(|e| file_err(&parts, e))?;
        std::fs::create_dir_all(&parts).map_err(|e| file_err(&parts, e))?;
        crate::atomic::write_atomic(&manifest, this_list.to_string().as_bytes())
            .map_err(|e| file_err(&manifest, e))?;
    }
    let batch = job.batch.max(1);
    let n_batches = images.len().div_ceil(batch);
    let bar = if job.progress {
        indicatif::ProgressBar::new(images.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut computed, mut reused) = (0, 0);
    for (b, chunk) in images.chunks(batch).enumerate() {
        let shard = parts.join(format!("batch_{b:05}.safetensors"));
        if shard.exists() {
            reused += 1;
            bar.inc(chunk.len() as u64);
            continue;
        }
        if job.max_batches.is_some_and(|m| computed >= m) {
            bar.finish_and_clear();
            return Ok(FeatureSummary {
                images: images.len(),
                computed_batches: computed,
                reused_batches: reused,
                complete: false,
            });
        }
        let size = loaded.config.image_size;
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * size * size);
        for (_, path) in chunk {
            let image = image::open(path)
                .map_err(|e| file_err(path, format!("cannot read image: {e}")))?
                .to_rgb8();
            pixels.extend(processor.process(&image));
        }
        let input = Tensor::<LiveBackend, 4>::from_data(
            TensorData::new(pixels, [chunk.len(), 3, size, size]),
            &device,
        );
        let t = targets(&loaded.model, input, job.layers.0, job.layers.1)?;
        let (ds, db) = tensor_bytes(t.detail)?;
        let (ss, sb) = tensor_bytes(t.semantic)?;
        let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
        let meta = HashMap::from([(
            "ids".to_string(),
            serde_json::to_string(&ids).unwrap_or_default(),
        )]);
        write_safetensors(&shard, &[("detail", ds, db), ("semantic", ss, sb)], meta)?;
        computed += 1;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    // Merge the shards in order into the output.
    let (mut detail, mut semantic, mut ids) = (Vec::new(), Vec::new(), Vec::<String>::new());
    let (mut detail_shape, mut semantic_shape) = (Vec::new(), Vec::new());
    for b in 0..n_batches {
        let shard = parts.join(format!("batch_{b:05}.safetensors"));
        let bytes = std::fs::read(&shard).map_err(|e| file_err(&shard, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| file_err(&shard, e))?;
        let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| file_err(&shard, e))?;
        let shard_ids: Vec<String> = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("ids"))
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| file_err(&shard, "no ids in its metadata"))?;
        ids.extend(shard_ids);
        for (name, out, shape) in [
            ("detail", &mut detail, &mut detail_shape),
            ("semantic", &mut semantic, &mut semantic_shape),
        ] {
            let view = st.tensor(name).map_err(|e| file_err(&shard, e))?;
            out.extend_from_slice(view.data());
            if shape.is_empty() {
                *shape = view.shape().to_vec();
                shape[0] = 0;
            }
            shape[0] += view.shape()[0];
        }
    }
    let meta = HashMap::from([
        (
            "ids".to_string(),
            serde_json::to_string(&ids).unwrap_or_default(),
        ),
        (
            "detail_layers".to_string(),
            format!("{}-{}", job.layers.0, job.layers.1),
        ),
        ("encoder".to_string(), job.encoder.display().to_string()),
    ]);
    write_safetensors(
        &job.out,
        &[
            ("detail", detail_shape, detail),
            ("semantic", semantic_shape, semantic),
        ],
        meta,
    )?;
    std::fs::remove_dir_all(&parts).map_err(|e| file_err(&parts, e))?;
    Ok(FeatureSummary {
        images: images.len(),
        computed_batches: computed,
        reused_batches: reused,
        complete: true,
    })
}

/// A features file read back: image ids and both targets, row-major.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    pub ids: Vec<String>,
    /// [images, tokens, width]
    pub detail: Vec<f32>,
    pub tokens: usize,
    pub width: usize,
    /// [images, dim]
    pub semantic: Vec<f32>,
    pub dim: usize,
    /// "first-last", as computed.
    pub detail_layers: String,
    /// The encoder folder, as given when computing.
    pub encoder: String,
}

impl FeatureSet {
    /// Row of each image id.
    pub fn row_of(&self) -> HashMap<&str, usize> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect()
    }

    pub fn detail_row(&self, i: usize) -> &[f32] {
        let n = self.tokens * self.width;
        &self.detail[i * n..(i + 1) * n]
    }
    pub fn semantic_row(&self, i: usize) -> &[f32] {
        &self.semantic[i * self.dim..(i + 1) * self.dim]
    }
}

/// Reads a file written by `compute_features`.
pub fn read_features(path: &Path) -> Result<FeatureSet, FeatureError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| file_err(path, e))?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| file_err(path, e))?;
    let meta = metadata.metadata().clone().unwrap_or_default();
    let ids: Vec<String> = meta
        .get("ids")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| file_err(path, "no ids in its metadata"))?;
    let floats = |name: &str| -> Result<(Vec<usize>, Vec<f32>), FeatureError> {
        let view = st.tensor(name).map_err(|e| file_err(path, e))?;
        if view.dtype() != Dtype::F32 {
            return Err(file_err(path, format!("{name}: expected f32")));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((view.shape().to_vec(), values))
    };
    let (ds, detail) = floats("detail")?;
    let (ss, semantic) = floats("semantic")?;
    if ds.len() != 3 || ss.len() != 2 || ds[0] != ids.len() || ss[0] != ids.len() {
        return Err(file_err(
            path,
            format!("expected detail [images, tokens, width] and semantic [images, dim] for {} ids, found {ds:?} and {ss:?}", ids.len()),
        ));
    }
    Ok(FeatureSet {
        ids,
        detail,
        tokens: ds[1],
        width: ds[2],
        semantic,
        dim: ss[1],
        detail_layers: meta.get("detail_layers").cloned().unwrap_or_default(),
        encoder: meta.get("encoder").cloned().unwrap_or_default(),
    })
}
