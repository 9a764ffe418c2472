//! A candidate gallery for retrieval feedback: a folder of images embedded once through the
//! encoder's vision tower; each decoded embedding is ranked against it (top-k by cosine), and
//! when the trial's stimulus is in the gallery, its per-trial identification score (the
//! fraction of the other candidates its own image beats). Also reads the images the window
//! shows beside a reconstruction. It does not decode; `decode` hands it embeddings.

use std::path::{Path, PathBuf};

use burn::prelude::Backend;

use crate::metrics::cosine;
use crate::model::conditioner::{embed_images, Conditioner};
use crate::model::device::{live_device, ComputeDevice, LiveBackend};
use crate::startup::Startup;

#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

fn err(path: &Path, message: impl std::fmt::Display) -> RetrievalError {
    RetrievalError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// An RGB8 image read from disk, resized to `size` x `size` when `size` is given.
pub fn read_rgb8(
    path: &Path,
    size: Option<u32>,
) -> Result<(Vec<u8>, usize, usize), RetrievalError> {
    let img = image::open(path)
        .map_err(|e| err(path, format!("cannot read as an image: {e}")))?
        .to_rgb8();
    let img = match size {
        Some(s) if img.width() != s || img.height() != s => {
            image::imageops::resize(&img, s, s, image::imageops::FilterType::Triangle)
        }
        _ => img,
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((img.into_raw(), w, h))
}

/// The encoder's image embeddings of image files (each resized to the encoder's input size).
pub fn embed_image_files<B: Backend>(
    conditioner: &Conditioner<B>,
    paths: &[PathBuf],
) -> Result<Vec<Vec<f32>>, RetrievalError> {
    let size = conditioner.image_size;
    let mut batch = Vec::with_capacity(paths.len());
    for path in paths {
        let (rgb, _, _) = read_rgb8(path, Some(size as u32))?;
        batch.push(rgb.iter().map(|&v| v as f32 / 255.0).collect::<Vec<f32>>());
    }
    embed_images(conditioner, &batch, size)
        .map_err(|e| err(paths.first().map_or(Path::new(""), PathBuf::as_path), e))
}

/// Shown by its folder and size (its embeddings and thumbnails are too long to print).
impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Gallery({}, {} images)",
            self.dir.display(),
            self.names.len()
        )
    }
}

pub struct Gallery {
    pub dir: PathBuf,
    /// File names, sorted.
    pub names: Vec<String>,
    pub embeddings: Vec<Vec<f32>>,
    /// 64 x 64 RGB thumbnails for the window.
    pub thumbnails: Vec<Vec<u8>>,
    /// Whether the embeddings came from the folder's cache (`gallery_cache`).
    pub cached: bool,
}

pub const THUMBNAIL: usize = 64;

/// One trial's ranking against the gallery.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ranking {
    /// (index into the gallery, cosine), best first.
    pub top: Vec<(usize, f32)>,
    /// Fraction of the other candidates the true stimulus's image beats, when it is in the
    /// gallery (1 = ranked first, 0.5 = chance).
    pub identification: Option<f64>,
}

impl Gallery {
    /// Every `.png` / `.jpg` in `dir` (not recursive), embedded through `encoder`.
    pub fn load(
        dir: &Path,
        encoder: &Path,
        device: ComputeDevice,
    ) -> Result<Gallery, RetrievalError> {
        Gallery::load_reporting(dir, encoder, device, &Startup::silent())
    }

    /// `load`, reporting the embedding (images done of all) to `startup`.
    pub fn load_reporting(
        dir: &Path,
        encoder: &Path,
        device: ComputeDevice,
        startup: &Startup,
    ) -> Result<Gallery, RetrievalError> {
        let entries = std::fs::read_dir(dir).map_err(|e| err(dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                let n = n.to_ascii_lowercase();
                n.ends_with(".png") || n.ends_with(".jpg") || n.ends_with(".jpeg")
            })
            .collect();
        names.sort();
        if names.len() < 2 {
            return Err(err(
                dir,
                "a gallery needs at least two images (.png or .jpg)",
            ));
        }
        let step = startup.step(format!("embedding the gallery ({} images)", names.len()));
        let key = super::gallery_cache::key(encoder, dir, &names).map_err(|e| err(dir, e))?;
        match super::gallery_cache::read(dir, &key, &names) {
            Ok(Some(c)) => {
                step.done(Some("from its cache".into()));
                return Ok(Gallery {
                    dir: dir.to_owned(),
                    names,
                    embeddings: c.embeddings,
                    thumbnails: c.thumbnails,
                    cached: true,
                });
            }
            Ok(None) => {}
            Err(why) => tracing::warn!("{why}"),
        }
        let conditioner = Conditioner::<LiveBackend>::load_on(encoder, live_device(device))
            .map_err(|e| err(encoder, e))?;
        let mut embeddings = Vec::with_capacity(names.len());
        let mut thumbnails = Vec::with_capacity(names.len());
        for chunk in names.chunks(32) {
            let paths: Vec<PathBuf> = chunk.iter().map(|n| dir.join(n)).collect();
            embeddings.extend(embed_image_files(&conditioner, &paths)?);
            for path in &paths {
                thumbnails.push(read_rgb8(path, Some(THUMBNAIL as u32))?.0);
            }
            step.progress(embeddings.len() as u64, names.len() as u64);
        }
        let cache = super::gallery_cache::Cached {
            embeddings,
            thumbnails,
        };
        let cached = super::gallery_cache::write(dir, &key, &names, &cache);
        if !cached {
            tracing::debug!("{}: gallery cache not written (read-only?)", dir.display());
        }
        step.done(Some(
            if cached {
                "embedded, cached for the next start"
            } else {
                "embedded (the folder is not writable: not cached)"
            }
            .into(),
        ));
        Ok(Gallery {
            dir: dir.to_owned(),
            names,
            embeddings: cache.embeddings,
            thumbnails: cache.thumbnails,
            cached: false,
        })
    }

    /// Ranks `embedding` against the gallery; `stimulus` is the trial's image file (its file
    /// name is looked up in the gallery).
    pub fn rank(&self, embedding: &[f32], stimulus: Option<&str>, k: usize) -> Ranking {
        let scores: Vec<f32> = self
            .embeddings
            .iter()
            .map(|g| cosine(embedding, g) as f32)
            .collect();
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let top = order.iter().take(k).map(|&i| (i, scores[i])).collect();
        let truth = stimulus
            .and_then(|s| Path::new(s).file_name())
            .and_then(|f| {
                self.names
                    .iter()
                    .position(|n| n.as_str() == f.to_string_lossy())
            });
        let identification = truth.map(|t| {
            let beaten = scores
                .iter()
                .enumerate()
                .filter(|&(i, &s)| i != t && s < scores[t])
                .count();
            beaten as f64 / (scores.len() - 1).max(1) as f64
        });
        Ranking {
            top,
            identification,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gallery(embeddings: Vec<Vec<f32>>) -> Gallery {
        Gallery {
            dir: PathBuf::from("g"),
            names: (0..embeddings.len())
                .map(|i| format!("img{i}.png"))
                .collect(),
            thumbnails: vec![Vec::new(); embeddings.len()],
            embeddings,
            cached: false,
        }
    }

    #[test]
    fn ranking_orders_by_cosine_and_scores_the_true_image() {
        let g = gallery(vec![
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.7, 0.7],
            vec![-1.0, 0.0],
        ]);
        let r = g.rank(&[0.9, 0.3], Some("stimuli/img2.png"), 3);
        assert_eq!(r.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 2, 1]);
        assert!((r.top[0].1 - 0.9 / 0.9f32.hypot(0.3)).abs() < 1e-6);
        // img2 is second: it beats img1 and img3 of the 3 others.
        assert_eq!(r.identification, Some(2.0 / 3.0));
        assert_eq!(
            g.rank(&[1.0, 0.0], Some("other.png"), 1).identification,
            None
        );
        assert_eq!(g.rank(&[1.0, 0.0], None, 1).top, vec![(0, 1.0)]);
    }

    #[test]
    fn a_folder_without_images_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = Gallery::load(dir.path(), Path::new("no-encoder"), ComputeDevice::Cpu)
            .err()
            .unwrap();
        assert!(e.to_string().contains("at least two images"), "{e}");
        assert!(e.to_string().contains(&dir.path().display().to_string()));
    }
}
