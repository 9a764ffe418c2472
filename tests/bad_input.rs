//! Bad input: each fault gives a clear error naming the file and what was expected, and the
//! ingest stream goes on past it.

mod common;

use std::path::Path;
use std::time::Duration;

use brainmclip::config::WatchMode;
use brainmclip::ingest::nifti_write::{nifti_bytes, write_nifti};
use brainmclip::ingest::{inflate_verified, read_volume_file, Ingest, IngestEvent, ReadError};
use common::{collect, int16_spec, session, summary, volume_values};

const DIMS: [usize; 3] = [8, 6, 4];

fn good_bytes(seed: u32) -> Vec<u8> {
    nifti_bytes(&int16_spec(&DIMS, 0.1), &volume_values(DIMS, seed), false).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn truncated_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "v_0001.nii", &good_bytes(1)[..100]);
    let err = read_volume_file(&path, 1 << 20).unwrap_err();
    assert!(matches!(err, ReadError::Incomplete { .. }));
    let text = err.to_string();
    assert!(
        text.contains("v_0001.nii") && text.contains("100 bytes") && text.contains("348"),
        "{text}"
    );
    assert!(err.is_retryable());
}

#[test]
fn truncated_voxels_of_an_uncompressed_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = good_bytes(1);
    let path = write(dir.path(), "v_0001.nii", &bytes[..bytes.len() - 10]);
    let text = read_volume_file(&path, 1 << 20).unwrap_err().to_string();
    assert!(
        text.contains("incomplete") && text.contains(&format!("implies {}", bytes.len())),
        "{text}"
    );
}

#[test]
fn wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = good_bytes(1);
    bytes[344..348].copy_from_slice(b"abc\0");
    let path = write(dir.path(), "v_0001.nii", &bytes);
    let text = read_volume_file(&path, 1 << 20).unwrap_err().to_string();
    assert!(
        text.contains("v_0001.nii: not a NIfTI-1 file") && text.contains("magic"),
        "{text}"
    );
    // NIfTI-2 is named as such.
    bytes[0..4].copy_from_slice(&540i32.to_le_bytes());
    let path = write(dir.path(), "v_0002.nii", &bytes);
    let text = read_volume_file(&path, 1 << 20).unwrap_err().to_string();
    assert!(text.contains("NIfTI-2"), "{text}");
}

#[test]
fn absurd_dims_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = good_bytes(1);
    for i in 0..3 {
        bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&30000i16.to_le_bytes());
    }
    let path = write(dir.path(), "v_0001.nii", &bytes);
    let err = read_volume_file(&path, 1 << 26).unwrap_err();
    // 2.7e13 voxels: had we allocated, this test would abort, not return an error.
    assert!(
        matches!(
            err,
            ReadError::TooLarge {
                voxels: 27_000_000_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("[30000, 30000, 30000]"), "{err}");
    // A negative dimension is named too.
    bytes[42..44].copy_from_slice(&(-4i16).to_le_bytes());
    let path = write(dir.path(), "v_0002.nii", &bytes);
    let text = read_volume_file(&path, 1 << 26).unwrap_err().to_string();
    assert!(text.contains("dim[1] = -4"), "{text}");
}

#[test]
fn unsupported_datatype() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = good_bytes(1);
    bytes[70..72].copy_from_slice(&32i16.to_le_bytes()); // complex64
    let path = write(dir.path(), "v_0001.nii", &bytes);
    let err = read_volume_file(&path, 1 << 20).unwrap_err();
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("v_0001.nii")
            && text.contains("32 (complex64)")
            && text.contains("expected uint8"),
        "{text}"
    );
}

#[test]
fn every_truncation_of_a_gzip_stream_is_caught() {
    let compressed = nifti_bytes(&int16_spec(&DIMS, 0.1), &volume_values(DIMS, 3), true).unwrap();
    let path = Path::new("v_0001.nii.gz");
    assert!(inflate_verified(&compressed, path, 1 << 20).is_ok());
    // nifti-rs would load most of these silently; we must refuse every one.
    for cut in (1..compressed.len())
        .step_by(7)
        .chain(compressed.len() - 8..compressed.len())
    {
        let err = inflate_verified(&compressed[..cut], path, 1 << 20).unwrap_err();
        assert!(err.is_retryable(), "cut at {cut}: {err}");
    }
    // A wrong CRC (last 8 bytes: CRC-32, then length).
    let mut bad = compressed.clone();
    let n = bad.len();
    bad[n - 8] ^= 0x55;
    let text = inflate_verified(&bad, path, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(text.contains("v_0001.nii.gz"), "{text}");
    // A wrong length field.
    let mut bad = compressed.clone();
    bad[n - 1] ^= 0x01;
    assert!(inflate_verified(&bad, path, 1 << 20).is_err());
    // More output than the limit allows.
    assert!(inflate_verified(&compressed, path, 100).is_err());
}

#[test]
fn the_stream_goes_on_past_every_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = session(d, WatchMode::Poll, 0.2, 8);
    config.ingest.max_retries = 2;
    config.ingest.retry_backoff_ms = 5;
    config.ingest.deadline_tr = 100.0; // only the count ends the run: every file gets its turn
    let ingest = Ingest::start(&config).unwrap();
    let spec = int16_spec(&DIMS, 0.2);
    write_nifti(&d.join("v_0001.nii"), &spec, &volume_values(DIMS, 1)).unwrap();
    write(d, "v_0002.nii", &good_bytes(2)[..100]); // truncated header, never completed
    let mut magic = good_bytes(3);
    magic[344..348].copy_from_slice(b"xyz\0");
    write(d, "v_0003.nii", &magic);
    let mut absurd = good_bytes(4);
    absurd[42..44].copy_from_slice(&30000i16.to_le_bytes());
    absurd[44..46].copy_from_slice(&30000i16.to_le_bytes());
    write(d, "v_0004.nii", &absurd);
    let mut complex = good_bytes(5);
    complex[70..72].copy_from_slice(&1792i16.to_le_bytes());
    write(d, "v_0005.nii", &complex);
    // NaN and Inf voxels: delivered, counted.
    let mut fspec = int16_spec(&DIMS, 0.2);
    fspec.datatype = brainmclip::ingest::Datatype::F32;
    let mut nan = volume_values(DIMS, 6);
    nan[3] = f32::NAN;
    nan[10] = f32::INFINITY;
    nan[11] = f32::NEG_INFINITY;
    write_nifti(&d.join("v_0006.nii"), &fspec, &nan).unwrap();
    // Geometry changes mid-run, then returns.
    write_nifti(
        &d.join("v_0007.nii"),
        &int16_spec(&[8, 6, 5], 0.2),
        &volume_values([8, 6, 5], 7),
    )
    .unwrap();
    write_nifti(&d.join("v_0008.nii"), &spec, &volume_values(DIMS, 8)).unwrap();

    let events = collect(&ingest, Duration::from_secs(20));
    let s = summary(&events)
        .into_iter()
        .filter(|e| e != "w")
        .collect::<Vec<_>>();
    assert_eq!(s, ["v1", "r2", "r3", "r4", "r5", "v6", "r7", "v8", "end"]);
    let reason = |index: u32| {
        events
            .iter()
            .find_map(|e| match e {
                IngestEvent::Rejected {
                    index: Some(i),
                    reason,
                    ..
                } if *i == index => Some(reason.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert!(
        reason(2).contains("v_0002.nii: incomplete") && reason(2).contains("after 3 attempts"),
        "{}",
        reason(2)
    );
    assert!(reason(3).contains("magic"), "{}", reason(3));
    assert!(reason(4).contains("over the limit"), "{}", reason(4));
    assert!(reason(5).contains("complex128"), "{}", reason(5));
    let r7 = reason(7);
    assert!(
        r7.contains("v_0001.nii") && r7.contains("dims [8, 6, 4] vs [8, 6, 5]"),
        "{r7}"
    );
    let v6 = events.iter().find_map(|e| match e {
        IngestEvent::Volume(v) if v.index == 6 => Some(v),
        _ => None,
    });
    let v6 = v6.unwrap();
    assert_eq!(v6.non_finite, 3);
    assert!(v6.data[3].is_nan() && v6.data[10] == f32::INFINITY);
    match events.last().unwrap() {
        IngestEvent::RunEnded { counts, .. } => {
            assert_eq!(
                (counts.delivered, counts.rejected, counts.non_finite_volumes),
                (3, 5, 1)
            );
        }
        other => panic!("{other:?}"),
    }
}
