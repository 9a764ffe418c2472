//! DICOM files one at a time: every transfer syntax pydicom ships MR_small in, truncated files
//! (pydicom's, and a real mosaic cut at every point of its header and through its pixels),
//! nibabel's mosaic geometry, a partial enhanced volume, a single-slice volume whose slices stop
//! coming, and a folder holding three series at once.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brainmclip::config::{SessionConfig, WatchMode};
use brainmclip::ingest::dicom::{
    choose, read_bytes_of, read_file, read_pixels, read_series, scan_folder, Content, DicomError,
    SeriesChoice,
};
use brainmclip::ingest::{Ingest, IngestEvent};
use common::{collect, session, summary};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom")
        .join(path)
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn mr_small_decodes_identically_in_every_supported_transfer_syntax() {
    let expected: Vec<f32> = std::fs::read(fixture("syntaxes/MR_small.expected.i16"))
        .unwrap()
        .chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
        .collect();
    assert_eq!(expected.len(), 64 * 64);
    for name in [
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
    ] {
        let file = read_file(&fixture(&format!("syntaxes/{name}")), 1 << 20).unwrap();
        let Content::Slice(slice) = file.content else {
            panic!("{name}: a single MR slice")
        };
        assert_eq!(
            slice.plane.values().unwrap(),
            expected.as_slice(),
            "{name}: pixels as pydicom decodes them"
        );
        assert_eq!(slice.plane.position, [-83.9063, -91.2, 6.6406], "{name}");
    }
    // Deflated data set: 512 x 512 8-bit, pixel sum as pydicom reads it.
    let (rows, cols, frames, values) = read_pixels(&fixture("syntaxes/image_dfl.dcm")).unwrap();
    assert_eq!((rows, cols, frames), (512, 512, 1));
    assert_eq!(values.iter().map(|&v| v as u64).sum::<u64>(), 33_322_688);
}

#[test]
fn jpeg_lossless_decodes_as_pylibjpeg_decodes_it() {
    // pydicom-data's JPEG-LL.dcm (1.2.840.10008.1.2.4.70, 1024 x 256, signed 16-bit); the
    // reference figures are pydicom + pylibjpeg's (tests/fixtures/dicom/syntaxes/fetch.py).
    let (rows, cols, frames, values) = read_pixels(&fixture("syntaxes/JPEG-LL.dcm")).unwrap();
    assert_eq!((rows, cols, frames), (1024, 256, 1));
    let sum: i64 = values.iter().map(|&v| v as i64).sum();
    let squares: i64 = values.iter().map(|&v| (v as i64) * (v as i64)).sum();
    assert_eq!((sum, squares), (3_596_452, 175_760_492));
    assert_eq!(values[512 * 256 + 128], 13.0);
}

#[test]
fn jpeg_2000_and_jpeg_ls_are_refused_naming_the_syntax() {
    for (name, uid) in [
        ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ] {
        let err = read_file(&fixture(&format!("syntaxes/{name}")), 1 << 20).unwrap_err();
        assert!(
            matches!(err, DicomError::UnsupportedTransferSyntax { .. }),
            "{err}"
        );
        let message = err.to_string();
        assert!(message.contains(name) && message.contains(uid), "{message}");
        assert!(!err.is_retryable());
    }
}

#[test]
fn pydicoms_truncated_file_is_incomplete() {
    let err = read_file(&fixture("syntaxes/MR_truncated.dcm"), 1 << 20).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("MR_truncated.dcm"), "{err}");
}

/// Where the (7FE0,0010) PixelData element starts in an explicit-VR little-endian file.
fn pixel_data_offset(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .unwrap()
}

#[test]
fn a_real_mosaic_cut_anywhere_is_never_a_volume() {
    let path = fixture("real/siemens-mosaic/In/ep2d_Asc_2/IM-0001-0001.dcm");
    let bytes = std::fs::read(&path).unwrap();
    let pixels_at = pixel_data_offset(&bytes);
    // Whole, it is a volume.
    assert!(matches!(
        read_bytes_of(&bytes, &path, 1 << 24).unwrap().content,
        Content::Volume { index: 1, .. }
    ));
    // Exactly before PixelData: dicom-rs opens it; we refuse it as incomplete.
    let err = read_bytes_of(&bytes[..pixels_at], &path, 1 << 24).unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("PixelData"),
        "{err}"
    );
    // Every cut through the header and PixelData's own header, then through the pixels.
    let mut cuts: Vec<usize> = (0..pixels_at + 16).collect();
    cuts.extend((pixels_at + 16..bytes.len()).step_by(997));
    cuts.push(bytes.len() - 1);
    for cut in cuts {
        match read_bytes_of(&bytes[..cut], &path, 1 << 24) {
            Ok(_) => panic!("cut at {cut} of {} read as a volume", bytes.len()),
            Err(e) => assert!(e.is_retryable(), "cut at {cut}: {e} should be retryable"),
        }
    }
}

#[test]
#[allow(clippy::needless_range_loop)] // matrix indices on both sides
fn nibabels_mosaic_geometry_for_siemens_dwi_1000() {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(fixture("syntaxes/siemens_dwi_1000.dcm.gz")).unwrap(),
    )
    .read_to_end(&mut bytes)
    .unwrap();
    let path = Path::new("siemens_dwi_1000.dcm");
    let file = read_bytes_of(&bytes, path, 1 << 24).unwrap();
    let Content::Volume { index, volume } = file.content else {
        panic!("a mosaic is a whole volume")
    };
    assert_eq!(index, 2);
    assert_eq!(volume.geometry.dims, [128, 128, 48]);
    // nibabel 5.4.2's MosaicWrapper.affine (LPS, voxel = (row, column, slice)); it equals
    // test_dicomwrappers' EXPECTED_AFFINE after the LPS → RAS flip and the column swap.
    let nib = [
        [0.0, 1.796875, 0.0, -115.0],
        [1.79684984, 0.0, 0.015708, -135.028779],
        [-0.00940844, 0.0, 2.999958, -78.710481],
    ];
    // Ours is (column, flipped row, slice) in RAS: column 0 = nibabel's column 1, column 1 =
    // minus nibabel's column 0, origin = nibabel's voxel (127, 0, 0).
    for r in 0..3 {
        let ras = if r < 2 { -1.0 } else { 1.0 };
        let want = [
            ras * nib[r][1],
            -ras * nib[r][0],
            ras * nib[r][2],
            ras * (nib[r][3] + 127.0 * nib[r][0]),
        ];
        for c in 0..4 {
            let got = volume.geometry.affine[r][c];
            assert!(
                (got - want[c]).abs() < 1e-3,
                "affine[{r}][{c}] {got} vs nibabel {}",
                want[c]
            );
        }
    }
}

fn watch(dir: &Path, volumes: u32, configure: impl FnOnce(&mut SessionConfig)) -> Vec<IngestEvent> {
    let mut config = session(dir, WatchMode::Poll, 0.1, volumes);
    configure(&mut config);
    let ingest = Ingest::start(&config).unwrap();
    collect(&ingest, Duration::from_secs(20))
}

/// Why volume `index` was rejected, if it was.
fn rejected_reason(events: &[IngestEvent], index: u32) -> Option<String> {
    events.iter().find_map(|e| match e {
        IngestEvent::Rejected {
            index: Some(i),
            reason,
            ..
        } if *i == index => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn an_enhanced_volume_with_fewer_frames_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let xa = fixture("real/siemens-xa30-enhanced/In/7_func-bold_task-fa_run-1");
    for file in sorted_files(&xa).into_iter().take(2) {
        std::fs::copy(&file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    let partial = fixture("partial/xa30_vol3_6_of_33_frames.dcm");
    std::fs::copy(&partial, dir.path().join("0003_partial.dcm")).unwrap();
    let events = watch(dir.path(), 3, |_| {});
    let picture = summary(&events).join(" ");
    let reason =
        rejected_reason(&events, 3).unwrap_or_else(|| panic!("volume 3 not rejected: {picture}"));
    assert!(
        reason.contains("6 slices") && reason.contains("has 33"),
        "{reason}"
    );
    assert!(picture.starts_with("v1 v2 r3"), "{picture}");
}

#[test]
fn single_slices_that_stop_coming_are_reported_with_their_count() {
    let dir = tempfile::tempdir().unwrap();
    let ge = fixture("real/ge-single-slice/In/SliceTimingRT/2_epiRT_IntAsc_GD0");
    let files = sorted_files(&ge);
    // Volume 1 whole, 10 of volume 2's 32 slices, volume 3 whole.
    for file in files[..32].iter().chain(&files[32..42]).chain(&files[64..]) {
        std::fs::copy(file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    let events = watch(dir.path(), 3, |_| {});
    let picture = summary(&events).join(" ");
    let reason =
        rejected_reason(&events, 2).unwrap_or_else(|| panic!("volume 2 not reported: {picture}"));
    assert!(reason.contains("10 of 32 slices"), "{reason}");
    assert_eq!(picture, "v1 r2 v3 end", "{picture}");
}

/// Three mosaic series' files interleaved in one folder.
fn three_series(dir: &Path) {
    for series in ["ep2d_Asc_2", "ep2d_Int_HF_5", "cmrr_Asc_6"] {
        let files = sorted_files(&fixture(&format!("real/siemens-mosaic/In/{series}")));
        for (k, file) in files.iter().enumerate() {
            std::fs::copy(file, dir.join(format!("{k:03}_{series}.dcm"))).unwrap();
        }
    }
}

#[test]
fn a_folder_of_three_series_gives_only_the_chosen_one() {
    let dir = tempfile::tempdir().unwrap();
    three_series(dir.path());
    let found = scan_folder(dir.path()).unwrap();
    let numbers: Vec<Option<i64>> = found.iter().map(|s| s.header.key.number).collect();
    assert_eq!(numbers, [Some(2), Some(5), Some(6)]);
    let pick = |text: &str| {
        choose(&found, &SeriesChoice::parse(text).unwrap()).map(|s| s.header.key.number)
    };
    assert_eq!(pick("auto"), Some(Some(2)));
    assert_eq!(pick("5"), Some(Some(5)));
    assert_eq!(pick("^cmrr"), Some(Some(6)));
    assert_eq!(pick("7"), None);

    for (choice, series) in [("5", "ep2d_Int_HF_5"), ("cmrr", "cmrr_Asc_6")] {
        let expected = read_series(
            &sorted_files(&fixture(&format!("real/siemens-mosaic/In/{series}"))),
            0,
            1 << 26,
        )
        .unwrap();
        let events = watch(dir.path(), 6, |c| c.ingest.series = choice.into());
        let picture = summary(&events).join(" ");
        let volumes: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                IngestEvent::Volume(v) => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(volumes.len(), 6, "{choice}: {picture}");
        for v in volumes {
            assert_eq!(
                v.data,
                expected[v.index as usize - 1].volume.data,
                "{choice}"
            );
            assert!(
                v.path.to_string_lossy().contains(series),
                "{}",
                v.path.display()
            );
        }
        // The two other series: one line each, however many files they have.
        let ignored: Vec<&String> = events
            .iter()
            .filter_map(|e| match e {
                IngestEvent::Warning { message, .. } if message.contains("not the series") => {
                    Some(message)
                }
                _ => None,
            })
            .collect();
        assert_eq!(ignored.len(), 2, "{choice}: {ignored:?}");
    }
}
