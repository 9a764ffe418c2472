//! Real scanner exports (Siemens mosaic F>>H and H>>F, Siemens XA30 enhanced, GE single-slice)
//! against dcm2niix's NIfTI of the same series (`tests/fixtures/dicom/real/*/Ref`, made by the
//! converter the field trusts). Compared in world space: every voxel of ours is mapped through
//! our affine and the inverse of dcm2niix's onto its grid, and the values there must be equal;
//! the affines must agree within 1e-3 mm. Both through the reader and through `convert`.

use std::path::{Path, PathBuf};

use brainmclip::ingest::dicom::convert::{convert_series, ConvertOptions};
use brainmclip::ingest::dicom::{read_series, scan_folder, SeriesChoice, SeriesVolume};
use brainmclip::ingest::{Geometry, RunReader};

fn real() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom/real")
}

/// (series folder, reference stem, volumes, slices)
const SERIES: [(&str, &str, usize, usize); 5] = [
    (
        "siemens-mosaic/In/ep2d_Asc_2",
        "siemens-mosaic/Ref/2_ep2d_Asc",
        6,
        36,
    ),
    (
        "siemens-mosaic/In/ep2d_Int_HF_5",
        "siemens-mosaic/Ref/5_ep2d_Int_HF",
        6,
        36,
    ),
    (
        "siemens-mosaic/In/cmrr_Asc_6",
        "siemens-mosaic/Ref/6_cmrr_Asc",
        6,
        40,
    ),
    (
        "siemens-xa30-enhanced/In/7_func-bold_task-fa_run-1",
        "siemens-xa30-enhanced/Ref/7_func-bold_task-fa_run-1",
        20,
        33,
    ),
    (
        "ge-single-slice/In/SliceTimingRT/2_epiRT_IntAsc_GD0",
        "ge-single-slice/Ref/epiRT_IntAsc_GD0_2",
        3,
        32,
    ),
];

struct Reference {
    geometry: Geometry,
    volumes: Vec<Vec<f32>>,
    json: serde_json::Value,
}

fn reference(stem: &str) -> Reference {
    let nii = real().join(format!("{stem}.nii.gz"));
    let mut reader = RunReader::open(&nii, 1 << 26).unwrap();
    let geometry = reader.header().geometry();
    let mut volumes = Vec::new();
    while let Some(v) = reader.next_volume() {
        volumes.push(v.unwrap().0);
    }
    let json = serde_json::from_str(
        &std::fs::read_to_string(real().join(format!("{stem}.json"))).unwrap(),
    )
    .unwrap();
    Reference {
        geometry,
        volumes,
        json,
    }
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(real().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[allow(clippy::needless_range_loop)] // index arithmetic is the point here
fn invert(a: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    // 3x3 inverse by cofactors, then the translation.
    let m = |r: usize, c: usize| a[r][c];
    let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
        - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
    let mut inv = [[0.0; 4]; 4];
    for r in 0..3 {
        for c in 0..3 {
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            inv[r][c] = (m(r1, c1) * m(r2, c2) - m(r1, c2) * m(r2, c1)) / det;
        }
    }
    for r in 0..3 {
        inv[r][3] = -(0..3).map(|c| inv[r][c] * a[c][3]).sum::<f64>();
    }
    inv[3][3] = 1.0;
    inv
}

/// Every voxel of `ours` equals the reference voxel at the same RAS position.
fn assert_same_in_world(
    ours: &Geometry,
    data: &[f32],
    theirs: &Reference,
    volume: usize,
    what: &str,
) {
    for r in 0..3 {
        for c in 0..4 {
            let (a, b) = (ours.affine[r][c], theirs.geometry.affine[r][c]);
            assert!(
                (a - b).abs() < 1e-3,
                "{what}: affine[{r}][{c}] {a} vs dcm2niix {b}"
            );
        }
    }
    let to_ref = invert(&theirs.geometry.affine);
    let [nx, ny, nz] = ours.dims;
    let [rx, ry, rz] = theirs.geometry.dims;
    let expected = &theirs.volumes[volume];
    let mut compared = 0;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let v = [x as f64, y as f64, z as f64];
                let world: Vec<f64> = (0..3)
                    .map(|r| {
                        (0..3).map(|c| ours.affine[r][c] * v[c]).sum::<f64>() + ours.affine[r][3]
                    })
                    .collect();
                let idx: Vec<f64> = (0..3)
                    .map(|r| (0..3).map(|c| to_ref[r][c] * world[c]).sum::<f64>() + to_ref[r][3])
                    .collect();
                let rounded: Vec<usize> = idx.iter().map(|i| i.round() as usize).collect();
                assert!(
                    idx.iter()
                        .zip(&rounded)
                        .all(|(i, r)| (i - *r as f64).abs() < 1e-3),
                    "{what}: voxel ({x},{y},{z}) falls between dcm2niix voxels at {idx:?}"
                );
                assert!(rounded[0] < rx && rounded[1] < ry && rounded[2] < rz);
                let theirs_value = expected[rounded[0] + rx * (rounded[1] + ry * rounded[2])];
                let ours_value = data[x + nx * (y + ny * z)];
                assert_eq!(
                    ours_value, theirs_value,
                    "{what}: voxel ({x},{y},{z}) = {ours_value}, dcm2niix {theirs_value}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(
        compared,
        rx * ry * rz,
        "{what}: not every reference voxel covered"
    );
}

fn assert_timing(times: Option<&[f64]>, tr: Option<f64>, theirs: &Reference, what: &str) {
    let want: Vec<f64> = theirs.json["SliceTiming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let got = times.unwrap_or_else(|| panic!("{what}: no slice timing read"));
    assert_eq!(got.len(), want.len(), "{what}");
    // Ours are the files' own per-slice times (XA: FrameAcquisitionDateTime, e.g. 0.0875 s);
    // dcm2niix evens XA times out to the slice interval (0.09 s), hence 3 ms, not exact.
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!(
            (a - b).abs() < 3e-3,
            "{what}: slice {k} at {a} s, dcm2niix {b} s"
        );
    }
    let tr_want = theirs.json["RepetitionTime"].as_f64().unwrap();
    assert!(
        (tr.unwrap() - tr_want).abs() < 1e-6,
        "{what}: TR {tr:?} vs {tr_want}"
    );
}

#[test]
fn every_volume_of_every_real_series_matches_dcm2niix_in_world_space() {
    for (dir, stem, n_volumes, n_slices) in SERIES {
        let theirs = reference(stem);
        let volumes: Vec<SeriesVolume> = read_series(&files(dir), 0, 1 << 26).unwrap();
        assert_eq!(volumes.len(), n_volumes, "{dir}");
        assert_eq!(theirs.volumes.len(), n_volumes, "{stem}");
        for (k, v) in volumes.iter().enumerate() {
            assert_eq!(v.index as usize, k + 1, "{dir}: indices from the header");
            let g = &v.volume.geometry;
            assert_eq!(g.dims[2], n_slices, "{dir}");
            assert_same_in_world(
                g,
                &v.volume.data,
                &theirs,
                k,
                &format!("{dir} volume {}", k + 1),
            );
            // GE writes a zero RTIA time for some slices of the first volume: no timing there.
            if let Some(times) = v.volume.slice_times_s.as_deref() {
                assert_timing(Some(times), g.tr_s, &theirs, dir);
            }
        }
        let timed = volumes
            .iter()
            .filter(|v| v.volume.slice_times_s.is_some())
            .count();
        let untimed_allowed = usize::from(dir.starts_with("ge-"));
        assert!(
            timed + untimed_allowed >= n_volumes,
            "{dir}: {timed} volumes with timing"
        );
    }
}

#[test]
fn convert_writes_the_same_run_and_a_bids_sidecar() {
    let out_dir = tempfile::tempdir().unwrap();
    for (dir, stem, n_volumes, _) in SERIES {
        let out = out_dir
            .path()
            .join(format!("{}.nii.gz", stem.replace('/', "_")));
        let converted = convert_series(
            &real().join(dir),
            &out,
            &ConvertOptions {
                series: SeriesChoice::Auto,
                slices_per_volume: 0,
                max_voxels: 1 << 26,
            },
        )
        .unwrap();
        assert_eq!(
            converted.indices,
            (1..=n_volumes as u32).collect::<Vec<_>>()
        );
        let theirs = reference(stem);
        let mut reader = RunReader::open(&out, 1 << 26).unwrap();
        assert_eq!(reader.n_volumes(), n_volumes);
        let geometry = reader.header().geometry();
        let mut k = 0;
        while let Some(v) = reader.next_volume() {
            assert_same_in_world(
                &geometry,
                &v.unwrap().0,
                &theirs,
                k,
                &format!("convert {dir} {k}"),
            );
            k += 1;
        }
        let sidecar: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&converted.sidecar).unwrap()).unwrap();
        let times: Vec<f64> = sidecar["SliceTiming"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_timing(
            Some(&times),
            sidecar["RepetitionTime"].as_f64(),
            &theirs,
            dir,
        );
        assert_eq!(
            sidecar["SeriesDescription"],
            theirs.json["SeriesDescription"]
        );
        assert_eq!(sidecar["SeriesNumber"], theirs.json["SeriesNumber"]);
        assert!(sidecar["Manufacturer"].as_str().unwrap().len() > 1);
    }
}

#[test]
fn scanning_finds_each_series_with_its_layout() {
    use brainmclip::ingest::dicom::Layout;
    let cases = [
        (SERIES[0].0, Layout::Mosaic, 6),
        (SERIES[3].0, Layout::Enhanced, 20),
        (SERIES[4].0, Layout::SingleSlice, 96),
    ];
    for (dir, layout, files) in cases {
        let found = scan_folder(&real().join(dir)).unwrap();
        assert_eq!(found.len(), 1, "{dir}");
        assert_eq!(found[0].header.layout, layout, "{dir}");
        assert_eq!(found[0].files.len(), files, "{dir}");
        assert!(found[0].looks_like_fmri(), "{dir}");
    }
}
