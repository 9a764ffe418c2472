//! File names → acquisition indices, and which names are not volumes at all.
//!
//! The index comes from the first capture group of a configurable regex; the default takes the
//! last number before the extension, which covers `prefix_0001.nii.gz` and Siemens-style
//! `001_000007_000123.nii`. Temporary names (dotfiles, `*.part`, `*.tmp`, editor backups) are
//! never volumes: writers that use temp + rename show us only the final name.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::nifti_read::FileKind;

#[derive(Debug, Clone)]
pub struct IndexPattern {
    regex: Regex,
}

#[derive(Debug, PartialEq, Eq)]
pub enum NameClass {
    /// A dataset (`.nii`, `.nii.gz`, `.hdr`, `.hdr.gz`) with this index.
    Volume(u32),
    /// The image half of a pair; its header is the dataset.
    PairImage(PathBuf),
    /// A NIfTI name the pattern gives no index for.
    NoIndex,
    /// A name a DICOM file may have (`.dcm`, `.ima`, none, numeric): its index is in its header.
    Dicom,
    /// Temporary, hidden or not NIfTI: ignored silently.
    Ignored,
}

impl IndexPattern {
    /// `pattern` must already be validated (see `SessionConfig::validate`).
    pub fn new(pattern: &str) -> Result<IndexPattern, regex::Error> {
        Ok(IndexPattern {
            regex: Regex::new(pattern)?,
        })
    }

    pub fn index_of(&self, file_name: &str) -> Option<u32> {
        self.regex
            .captures(file_name)?
            .get(1)?
            .as_str()
            .parse()
            .ok()
    }

    pub fn classify(&self, path: &Path) -> NameClass {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return NameClass::Ignored;
        };
        if is_temporary(name) {
            return NameClass::Ignored;
        }
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".img") || lower.ends_with(".img.gz") {
            let gz = lower.ends_with(".gz");
            let stem = &name[..name.len() - if gz { 7 } else { 4 }];
            let upper = name[stem.len()..].starts_with(".IMG");
            let hdr = if upper { ".HDR" } else { ".hdr" };
            let ext = if gz {
                format!("{hdr}{}", &name[name.len() - 3..])
            } else {
                hdr.to_string()
            };
            return NameClass::PairImage(path.with_file_name(format!("{stem}{ext}")));
        }
        if FileKind::of(path).is_none() {
            return if super::dicom::is_dicom_name(name) {
                NameClass::Dicom
            } else {
                NameClass::Ignored
            };
        }
        match self.index_of(name) {
            Some(i) => NameClass::Volume(i),
            None => NameClass::NoIndex,
        }
    }
}

/// Names that a writer uses while a file is not finished, or that no scanner exports.
pub fn is_temporary(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.ends_with('~')
        || [".part", ".tmp", ".temp", ".swp", ".partial", ".crdownload"]
            .iter()
            .any(|ext| lower.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_PATTERN;

    #[test]
    fn default_pattern_covers_common_exports() {
        let p = IndexPattern::new(DEFAULT_PATTERN).unwrap();
        assert_eq!(
            p.classify(Path::new("/x/vol_0001.nii.gz")),
            NameClass::Volume(1)
        );
        assert_eq!(
            p.classify(Path::new("001_000007_000123.nii")),
            NameClass::Volume(123)
        );
        assert_eq!(
            p.classify(Path::new("run2_0042.hdr")),
            NameClass::Volume(42)
        );
        assert_eq!(
            p.classify(Path::new("run2_0042.HDR.gz")),
            NameClass::Volume(42)
        );
        assert_eq!(p.classify(Path::new("anat.nii")), NameClass::NoIndex);
        assert_eq!(
            p.classify(Path::new("/d/run_0042.img.gz")),
            NameClass::PairImage(PathBuf::from("/d/run_0042.hdr.gz"))
        );
        assert_eq!(
            p.classify(Path::new("/d/RUN_7.IMG")),
            NameClass::PairImage(PathBuf::from("/d/RUN_7.HDR"))
        );
    }

    #[test]
    fn temporary_names_are_ignored() {
        let p = IndexPattern::new(DEFAULT_PATTERN).unwrap();
        for name in [
            ".vol_0001.nii",
            "vol_0001.nii.part",
            "vol_0001.nii.tmp",
            "vol_0001.nii~",
            "notes.txt",
        ] {
            assert_eq!(p.classify(Path::new(name)), NameClass::Ignored, "{name}");
        }
    }

    #[test]
    fn custom_pattern() {
        let p = IndexPattern::new(r"^img(\d+)_").unwrap();
        assert_eq!(p.index_of("img17_run.nii"), Some(17));
        assert_eq!(p.index_of("img_run.nii"), None);
    }
}
