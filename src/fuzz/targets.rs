//! The fuzz targets: each is a public entry point the daemon hands outside bytes to, called the
//! way the daemon calls it, with the production limits (`ingest.max_voxels`,
//! `feedback.max_line_bytes` at their defaults), and what it returns reduced to accepted or
//! rejected. Anything else (a panic, an input that takes seconds) is the runner's to report.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use super::mutate::{Grammar, Mutator};
use super::seeds::{self, FEEDBACK_LINES};
use super::{FuzzError, Outcome, Target};
use crate::config::{FeedbackConfig, IngestConfig, SessionConfig};
use crate::ingest::dicom::csa::CsaHeader;
use crate::ingest::dicom::{read_bytes_of, Content};
use crate::ingest::{convert_to_f32, inflate_verified, Header, ReadError};

/// The limits a session runs with by default: the fuzzer tests what ships.
struct Limits {
    max_voxels: usize,
    /// The most a gzip file may inflate to (as `nifti_read::byte_limit`: 8-byte voxels and a
    /// generous header).
    gzip_bytes: usize,
    max_line_bytes: usize,
}

static LIMITS: LazyLock<Limits> = LazyLock::new(|| {
    let max_voxels = IngestConfig::default().max_voxels;
    Limits {
        max_voxels,
        gzip_bytes: max_voxels.saturating_mul(8).saturating_add(1 << 20),
        max_line_bytes: FeedbackConfig::default().max_line_bytes,
    }
});

/// One target: its name, what it calls, where its seeds come from and how they are shaped.
struct Spec {
    name: &'static str,
    about: &'static str,
    mutator: fn(&Path) -> Result<Mutator, FuzzError>,
    run: fn(&[u8]) -> Outcome,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "nifti-header",
        about: "ingest::Header::parse, then what the daemon derives from an accepted header",
        mutator: nifti_header_seeds,
        run: run_nifti_header,
    },
    Spec {
        name: "nifti-volume",
        about: "a single-file .nii from bytes: Header::parse, the 3-D and length checks, convert_to_f32",
        mutator: nifti_volume_seeds,
        run: run_nifti_volume,
    },
    Spec {
        name: "gzip",
        about: "ingest::inflate_verified (CRC-32 and length), then the .nii.gz read of what it gives",
        mutator: gzip_seeds,
        run: run_gzip,
    },
    Spec {
        name: "dicom",
        about: "ingest::dicom::read_bytes_of (mosaic with CSA, enhanced, single slice; every codec)",
        mutator: dicom_seeds,
        run: run_dicom,
    },
    Spec {
        name: "csa",
        about: "ingest::dicom::csa::CsaHeader::parse and its accessors",
        mutator: csa_seeds,
        run: run_csa,
    },
    Spec {
        name: "session-toml",
        about: "config::SessionConfig::parse (TOML and validation)",
        mutator: session_toml_seeds,
        run: run_session_toml,
    },
    Spec {
        name: "feedback-line",
        about: "a feedback client's input: line limits, UTF-8, sink::feedback::reply_to per line",
        mutator: feedback_seeds,
        run: run_feedback_lines,
    },
];

/// Every target's name, in the order a full run takes them.
pub fn target_names() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.name).collect()
}

/// The targets named (all when `names` is empty), with seeds read from under `seed_root` (the
/// crate's folder, which holds `tests/fixtures` and `src/session.example.toml`).
pub fn targets(seed_root: &Path, names: &[String]) -> Result<Vec<Target>, FuzzError> {
    if let Some(unknown) = names
        .iter()
        .find(|n| !SPECS.iter().any(|s| s.name == n.as_str()))
    {
        return Err(FuzzError::UnknownTarget {
            name: unknown.clone(),
            known: target_names().join(", "),
        });
    }
    SPECS
        .iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name))
        .map(|spec| {
            let mutator = (spec.mutator)(seed_root)?;
            if mutator.seeds().is_empty() {
                return Err(FuzzError::NoSeeds {
                    target: spec.name,
                    root: seed_root.to_owned(),
                });
            }
            Ok(Target {
                name: spec.name,
                about: spec.about,
                mutator: Arc::new(mutator),
                run: spec.run,
            })
        })
        .collect()
}

fn outcome<T, E>(result: Result<T, E>) -> Outcome {
    match result {
        Ok(_) => Outcome::Accepted,
        Err(_) => Outcome::Rejected,
    }
}

const NIFTI_GRAMMAR: Grammar = Grammar::Binary {
    anchors: seeds::nifti_anchors,
    tokens: seeds::NIFTI_TOKENS,
};

fn nifti_dir(root: &Path) -> std::path::PathBuf {
    root.join("tests/fixtures/nifti")
}

/// Every header in the fixtures: `.nii`, `.hdr`, and the inflated `.nii.gz` and `.hdr.gz`.
fn nifti_header_seeds(root: &Path) -> Result<Mutator, FuzzError> {
    let files = seeds::files_ending(
        &nifti_dir(root),
        &[".nii", ".hdr", ".nii.gz", ".hdr.gz"],
        true,
    )?;
    Ok(Mutator::new(files, NIFTI_GRAMMAR))
}

fn nifti_volume_seeds(root: &Path) -> Result<Mutator, FuzzError> {
    let files = seeds::files_ending(&nifti_dir(root), &[".nii", ".nii.gz"], true)?;
    Ok(Mutator::new(files, NIFTI_GRAMMAR))
}

/// The compressed fixtures as they are, and their content (mutated, then compressed again).
fn gzip_seeds(root: &Path) -> Result<Mutator, FuzzError> {
    let dir = nifti_dir(root);
    let raw = seeds::files_ending(&dir, &[".nii.gz", ".hdr.gz"], false)?;
    let content = seeds::files_ending(&dir, &[".nii.gz", ".hdr.gz"], true)?;
    let grammar = Grammar::Binary {
        anchors: seeds::gzip_anchors,
        tokens: seeds::GZIP_TOKENS,
    };
    Ok(Mutator::new(raw, grammar).compressing(Mutator::new(content, NIFTI_GRAMMAR)))
}

fn dicom_seeds(root: &Path) -> Result<Mutator, FuzzError> {
    let files = seeds::dicom_files(&root.join("tests/fixtures/dicom"))?;
    let grammar = Grammar::Binary {
        anchors: seeds::dicom_anchors,
        tokens: seeds::DICOM_TOKENS,
    };
    Ok(Mutator::new(files, grammar))
}

fn csa_seeds(root: &Path) -> Result<Mutator, FuzzError> {
    let files = seeds::files_ending(&root.join("tests/fixtures/dicom/csa"), &[".bin"], false)?;
    let grammar = Grammar::Binary {
        anchors: seeds::csa_anchors,
        tokens: seeds::CSA_TOKENS,
    };
    Ok(Mutator::new(files, grammar))
}

fn session_toml_seeds(root: &Path) -> Result<Mutator, FuzzError> {
    let mut files = vec![seeds::read(&root.join("src/session.example.toml"))?];
    for name in ["session.toml", "session-sim.toml"] {
        files.push(seeds::read(&root.join("tests/fixtures").join(name))?);
    }
    Ok(Mutator::new(
        files,
        Grammar::Text {
            tokens: seeds::TOML_TOKENS,
        },
    ))
}

fn feedback_seeds(_root: &Path) -> Result<Mutator, FuzzError> {
    let lines = FEEDBACK_LINES.iter().map(|line| line.to_vec()).collect();
    Ok(Mutator::new(
        lines,
        Grammar::Text {
            tokens: seeds::JSON_TOKENS,
        },
    ))
}

fn run_nifti_header(bytes: &[u8]) -> Outcome {
    let Ok(header) = Header::parse(bytes, Path::new("fuzz.nii"), LIMITS.max_voxels) else {
        return Outcome::Rejected;
    };
    // What ingest, replay and inspect derive from an accepted header: each must hold for any
    // header `parse` accepts.
    let geometry = header.geometry();
    std::hint::black_box((
        header.voxels_per_volume(),
        header.bytes_per_volume(),
        header.n_volumes(),
        header.is_single_file(),
        header.single_volume_nii_header(),
        geometry.n_voxels(),
        geometry.orientation(),
    ));
    Outcome::Accepted
}

/// A single-file `.nii` read from memory the way `read_raw_volume` reads one from disk: the
/// header validated first, one volume only, the voxels the header implies present, then
/// converted. `read_raw_volume` itself takes a path, and a file per input would make a million
/// inputs a matter of hours; a from-bytes entry point in `nifti_read` would let this call it.
fn read_nii_bytes(bytes: &[u8]) -> Result<(Vec<f32>, usize), ReadError> {
    let path = Path::new("fuzz.nii");
    let header = Header::parse(bytes, path, LIMITS.max_voxels)?;
    if header.n_volumes() != 1 {
        return Err(ReadError::NotThreeD {
            path: path.to_owned(),
            found: format!("{} volumes", header.n_volumes()),
        });
    }
    let start = header.vox_offset;
    let voxels = start
        .checked_add(header.bytes_per_volume())
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| ReadError::Incomplete {
            path: path.to_owned(),
            detail: format!("{} bytes, shorter than the header implies", bytes.len()),
        })?;
    let mut data = Vec::with_capacity(header.voxels_per_volume());
    let non_finite = convert_to_f32(
        voxels,
        header.datatype,
        header.big_endian,
        header.scaling,
        &mut data,
    );
    Ok((data, non_finite))
}

fn run_nifti_volume(bytes: &[u8]) -> Outcome {
    outcome(read_nii_bytes(bytes))
}

fn run_gzip(bytes: &[u8]) -> Outcome {
    match inflate_verified(bytes, Path::new("fuzz.nii.gz"), LIMITS.gzip_bytes) {
        Ok(content) => {
            // A `.nii.gz` is read from what inflates; its own outcome is the NIfTI targets'.
            std::hint::black_box(read_nii_bytes(&content).is_ok());
            Outcome::Accepted
        }
        Err(_) => Outcome::Rejected,
    }
}

fn run_dicom(bytes: &[u8]) -> Outcome {
    let Ok(file) = read_bytes_of(bytes, Path::new("fuzz.dcm"), LIMITS.max_voxels) else {
        return Outcome::Rejected;
    };
    // What the ingest service asks of a decoded file next.
    std::hint::black_box(file.header.volume_index(None));
    std::hint::black_box(file.header.volume_index(Some(3)));
    match &file.content {
        Content::Volume { volume, .. } => {
            std::hint::black_box(volume.geometry.orientation());
        }
        Content::Slice(slice) => {
            std::hint::black_box(slice.volume_index(slice.images_in_acquisition));
        }
    }
    Outcome::Accepted
}

fn run_csa(bytes: &[u8]) -> Outcome {
    let Ok(csa) = CsaHeader::parse(bytes) else {
        return Outcome::Rejected;
    };
    // The mosaic reader's questions, and every tag read as text and as numbers.
    std::hint::black_box((
        csa.images_in_mosaic(),
        csa.slice_normal(),
        csa.slice_times_ms(),
        csa.ice_dims(),
    ));
    for name in csa.tags.keys() {
        std::hint::black_box((csa.text(name), csa.numbers(name)));
    }
    Outcome::Accepted
}

fn run_session_toml(bytes: &[u8]) -> Outcome {
    // `SessionConfig::load` refuses non-UTF-8 before parsing; the lossy text lets every input
    // reach the parser and the validation.
    let text = String::from_utf8_lossy(bytes);
    outcome(SessionConfig::parse(&text, Path::new("fuzz-session.toml")))
}

/// One client's input: split into lines as the server's reader splits it, with its length and
/// UTF-8 refusals, blank lines skipped as `serve` skips them, every other line to `reply_to`.
/// Accepted when at least one marker was acknowledged and nothing was refused.
fn run_feedback_lines(bytes: &[u8]) -> Outcome {
    let (markers, received) = crossbeam_channel::unbounded();
    let (mut acks, mut refused) = (0usize, false);
    for line in bytes.split(|&b| b == b'\n') {
        if line.len() > LIMITS.max_line_bytes {
            refused = true;
            break;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            refused = true;
            break;
        };
        if text.trim().is_empty() {
            continue;
        }
        match crate::sink::feedback::reply_to(text, &markers) {
            Some(reply) if reply["type"] == "ack" => acks += 1,
            Some(_) => refused = true,
            None => {
                refused = true;
                break;
            }
        }
    }
    drop(received);
    if acks > 0 && !refused {
        Outcome::Accepted
    } else {
        Outcome::Rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_distinct_name() {
        let mut names = target_names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SPECS.len());
    }

    #[test]
    fn an_unknown_target_is_named_in_the_error() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let err = targets(root, &["nifti".to_string()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("\"nifti\"") && err.contains("nifti-header"),
            "{err}"
        );
    }

    #[test]
    fn the_feedback_target_acknowledges_a_marker_and_refuses_garbage() {
        let marker = b"{\"type\":\"marker\",\"onset_s\":1}";
        assert_eq!(run_feedback_lines(marker), Outcome::Accepted);
        assert_eq!(run_feedback_lines(b"hello"), Outcome::Rejected);
        assert_eq!(run_feedback_lines(b"\xff\xfe"), Outcome::Rejected);
        assert_eq!(run_feedback_lines(&[b'x'; 5000]), Outcome::Rejected);
    }
}
