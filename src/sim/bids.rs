//! Files out: the BIDS layout of a simulated session and its ground truth. Every file is
//! written through a temporary name and renamed, so a reader never sees half of one.

use std::path::{Path, PathBuf};

use super::SimError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_owned(),
        source,
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SimError> {
    crate::atomic::write_atomic(path, bytes).map_err(io(path))
}

/// A tab-separated table with a header line.
pub fn write_tsv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<(), SimError> {
    let mut text = header.join("\t");
    text.push('\n');
    for row in rows {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), SimError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| SimError::Invalid(e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

pub fn write_png(path: &Path, rgb: &[u8], size: usize) -> Result<(), SimError> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(
            rgb,
            size as u32,
            size as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| SimError::Invalid(format!("{}: cannot encode PNG: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

use image::ImageEncoder as _;

/// Where each file of a session goes.
pub struct Layout {
    pub root: PathBuf,
    pub subject: String,
}

impl Layout {
    fn sub(&self) -> String {
        format!("sub-{}", self.subject)
    }

    pub fn bold(&self, run: usize) -> PathBuf {
        self.root.join(self.sub()).join("func").join(format!(
            "{}_task-images_run-{run:02}_bold.nii.gz",
            self.sub()
        ))
    }

    pub fn bold_json(&self, run: usize) -> PathBuf {
        self.root
            .join(self.sub())
            .join("func")
            .join(format!("{}_task-images_run-{run:02}_bold.json", self.sub()))
    }

    pub fn events(&self, run: usize) -> PathBuf {
        self.root.join(self.sub()).join("func").join(format!(
            "{}_task-images_run-{run:02}_events.tsv",
            self.sub()
        ))
    }

    pub fn anat(&self) -> PathBuf {
        self.root
            .join(self.sub())
            .join("anat")
            .join(format!("{}_T2starw.nii.gz", self.sub()))
    }

    pub fn rois(&self) -> PathBuf {
        self.root
            .join(self.sub())
            .join("anat")
            .join(format!("{}_desc-visual_dseg.nii.gz", self.sub()))
    }

    pub fn roi_table(&self) -> PathBuf {
        self.root
            .join(self.sub())
            .join("anat")
            .join(format!("{}_desc-visual_dseg.tsv", self.sub()))
    }

    pub fn stimuli_dir(&self) -> PathBuf {
        self.root.join("stimuli")
    }

    pub fn truth_dir(&self) -> PathBuf {
        self.root.join("derivatives").join("sim").join(self.sub())
    }

    pub fn motion(&self, run: usize) -> PathBuf {
        self.truth_dir().join(format!(
            "{}_task-images_run-{run:02}_motion.tsv",
            self.sub()
        ))
    }

    pub fn signal(&self, run: usize) -> PathBuf {
        self.truth_dir().join(format!(
            "{}_task-images_run-{run:02}_signal.tsv",
            self.sub()
        ))
    }
}
