//! The fuzzer's CI run: every target gets 10 000 mutated inputs from a fixed seed, and none may
//! crash or hang. Each target must also both accept and reject some inputs, so a target wired
//! to nothing (or to a parser that refuses everything) fails here. The full run is
//! `cargo run --example fuzz -- --inputs 1000000`.

use std::path::{Path, PathBuf};

use brainmclip::fuzz::{self, FuzzOptions, Target};

const INPUTS: u64 = 10_000;
const SEED: u64 = 20_240_917;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target(name: &str) -> Target {
    let mut found = fuzz::targets(root(), &[name.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.len(), 1, "{name}");
    found.remove(0)
}

/// Crashing inputs are kept under the build's scratch folder, to reproduce a CI failure.
fn crash_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes")
}

fn survives_and_sees_both_outcomes(name: &str) {
    let target = target(name);
    let options = FuzzOptions {
        crash_dir: Some(crash_dir()),
        ..FuzzOptions::default()
    };
    let report = fuzz::run_target(&target, INPUTS, SEED, &options);
    let text = fuzz::FuzzReport {
        targets: vec![report.clone()],
    }
    .to_string();
    assert_eq!(report.inputs, INPUTS, "{text}");
    assert_eq!(report.crashes, 0, "{text}");
    assert_eq!(report.hangs, 0, "{text}");
    assert_eq!(report.accepted + report.rejected, INPUTS, "{text}");
    assert!(report.accepted > 0, "no input was accepted:\n{text}");
    assert!(report.rejected > 0, "no input was rejected:\n{text}");
}

#[test]
fn nifti_header() {
    survives_and_sees_both_outcomes("nifti-header");
}

#[test]
fn nifti_volume() {
    survives_and_sees_both_outcomes("nifti-volume");
}

#[test]
fn gzip() {
    survives_and_sees_both_outcomes("gzip");
}

#[test]
fn dicom() {
    survives_and_sees_both_outcomes("dicom");
}

#[test]
fn csa() {
    survives_and_sees_both_outcomes("csa");
}

#[test]
fn session_toml() {
    survives_and_sees_both_outcomes("session-toml");
}

#[test]
fn feedback_line() {
    survives_and_sees_both_outcomes("feedback-line");
}

#[test]
fn every_target_is_tested_here() {
    let tested = [
        "nifti-header",
        "nifti-volume",
        "gzip",
        "dicom",
        "csa",
        "session-toml",
        "feedback-line",
    ];
    assert_eq!(fuzz::target_names(), tested);
}

#[test]
fn inputs_are_the_same_for_the_same_seed_and_index() {
    for target in fuzz::targets(root(), &[]).unwrap_or_else(|e| panic!("{e}")) {
        for index in [0, 1, 2, 99, 4_321, 999_999] {
            let input = target.mutator.input(SEED, index);
            assert_eq!(input, target.mutator.input(SEED, index), "{}", target.name);
            assert!(input.len() <= target.mutator.max_len(), "{}", target.name);
        }
        let differ = (0..50)
            .filter(|&i| target.mutator.input(SEED, i) != target.mutator.input(SEED + 1, i))
            .count();
        assert!(
            differ > 40,
            "{}: {differ} of 50 inputs depend on the seed",
            target.name
        );
    }
}

#[test]
fn a_run_is_reproduced_by_its_seed() {
    let target = target("csa");
    let options = FuzzOptions::default();
    let first = fuzz::run_target(&target, 2_000, SEED, &options);
    let second = fuzz::run_target(&target, 2_000, SEED, &options);
    assert_eq!(
        (first.accepted, first.rejected, first.crashes),
        (second.accepted, second.rejected, second.crashes)
    );
}

#[test]
fn the_seeds_are_real_files_within_the_size_limit() {
    let dicom = target("dicom");
    let seeds = dicom.mutator.seeds();
    assert!(seeds.len() >= 10, "{} DICOM seeds", seeds.len());
    assert!(seeds
        .iter()
        .all(|s| s.len() as u64 <= fuzz::MAX_DICOM_SEED_BYTES));
    assert!(seeds
        .iter()
        .all(|s| s.get(128..132) == Some(&b"DICM"[..]) || s.len() < 132));
    // Unmutated, most seeds of every target are accepted: the targets are wired to parsers.
    for target in fuzz::targets(root(), &[]).unwrap_or_else(|e| panic!("{e}")) {
        let accepted = target
            .mutator
            .seeds()
            .iter()
            .filter(|s| fuzz::run_input(&target, s) == Ok(fuzz::Outcome::Accepted))
            .count();
        assert!(
            accepted > 0,
            "{}: no seed is accepted as it is",
            target.name
        );
    }
}

/// Inputs the fuzzer found crashing or stalling a parser, each a test that must pass once the
/// parser is fixed.
///
/// How one gets here: the fuzzer saves such an input as `fuzz-crashes/<target>/<hash>.bin` (with
/// `<hash>.txt`: the panic or the time, the seed and the input's index). Copy the `.bin` to
/// `tests/fixtures/fuzz/<target>/` and add a test below that runs it through its target.
/// The two below were found by this file's `dicom` run (`--seed 20240917`) and fixed in the
/// DICOM reader (a decoder panic is an error; declared lengths are checked against the file).
mod regressions {
    use std::time::{Duration, Instant};

    use super::*;
    use brainmclip::fuzz::Outcome;

    fn saved(target: &str, file: &str) -> Vec<u8> {
        let path = root().join("tests/fixtures/fuzz").join(target).join(file);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// MR_small_RLE.dcm with an RLE segment that decodes shorter than rows x columns: the RLE
    /// decoder of dicom-transfer-syntax-registry 0.10.1 indexes past the segment
    /// (`adapters/rle_lossless.rs:119`, reached from `pixels.rs` `stored_values`) and panics,
    /// which would take down the ingest thread. Input 971.
    #[test]
    fn a_short_rle_segment_is_an_error_not_a_panic() {
        let outcome = fuzz::run_input(&target("dicom"), &saved("dicom", "7fdc9e003e200436.bin"));
        assert_eq!(outcome, Ok(Outcome::Rejected));
    }

    /// Every saved input of every target (including three deflated or VR-mangled DICOM files
    /// whose declared lengths made the parser take seconds and 4 GB before the length walk
    /// learned deflate and unknown VRs): an outcome, quickly, never a panic.
    #[test]
    fn every_saved_input_ends_quickly_without_a_panic() {
        let dir = root().join("tests/fixtures/fuzz");
        let mut checked = 0;
        for target_dir in std::fs::read_dir(&dir).expect("fixtures").flatten() {
            let name = target_dir.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(target_dir.path())
                .expect("target dir")
                .flatten()
            {
                let bytes = std::fs::read(file.path()).expect("input");
                let started = Instant::now();
                let outcome = fuzz::run_input(&target(&name), &bytes);
                assert!(outcome.is_ok(), "{}: {outcome:?}", file.path().display());
                assert!(
                    started.elapsed() < Duration::from_millis(500),
                    "{}: {:?}",
                    file.path().display(),
                    started.elapsed()
                );
                checked += 1;
            }
        }
        assert!(checked >= 5, "{checked} saved inputs");
    }

    /// A 3 KB file with an element declaring a length of hundreds of megabytes: dicom-parser
    /// 0.10.1 reserves and zero-fills the declared length before reading it
    /// (`stateful/decode.rs`, `read_value_ob` and its kin), about 4 GB and 2 to 8 s per read,
    /// and the ingest service retries a failed read. Input 984.
    #[test]
    fn an_element_longer_than_the_file_is_refused_at_once() {
        let started = Instant::now();
        let outcome = fuzz::run_input(&target("dicom"), &saved("dicom", "e8bb1b8a6b9c36d9.bin"));
        assert_eq!(outcome, Ok(Outcome::Rejected));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
}
