//! Per-volume read + mask + rolling z-score, ours against a Python nibabel + numpy script doing
//! the same (`bench/python_baseline.py`), in one run on the same files: NSD's 81x104x83 grid
//! and 64x64x36, gzipped int16 volumes, masks of tens of thousands of voxels. Budget: at least
//! 5x faster than Python. Run: `cargo bench --bench pipeline_vs_python` (needs python3 with
//! nibabel and numpy: `pip install nibabel numpy`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use brainmclip::ingest::nifti_write::{write_nifti, NiftiSpec};
use brainmclip::ingest::{read_volume_file, Datatype};
use brainmclip::preprocess::masks::Masks;
use brainmclip::preprocess::zscore::{RollingZ, ZMode};
use brainmclip::sim::subject::{Grid, Subject, SubjectParams, Tissue};

const VOLUMES: usize = 60;
const WINDOW: usize = 30;

fn write_npy_indices(path: &Path, indices: &[usize]) {
    // A minimal .npy (version 1.0) of little-endian int64.
    let header = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
        indices.len()
    );
    let mut h = header.into_bytes();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    for &i in indices {
        out.extend_from_slice(&(i as i64).to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        println!("(smoke run skipped; use `cargo bench --bench pipeline_vs_python` for figures)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    for (label, grid, ext) in [
        ("81x104x83 @ 1.8 mm, .nii.gz", Grid::NSD, "nii.gz"),
        ("81x104x83 @ 1.8 mm, .nii", Grid::NSD, "nii"),
        ("64x64x36 @ 3 mm, .nii.gz", Grid::MM3, "nii.gz"),
        ("64x64x36 @ 3 mm, .nii", Grid::MM3, "nii"),
    ] {
        let dir = root.path().join(label.replace([' ', '@', '.', ','], "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let subject = Subject::generate(
            &SubjectParams {
                grid,
                psc: [0.0; 5],
                hrf_lag_sd_s: 0.0,
                hrf_width_sd: 0.0,
            },
            1,
        );
        // Mask: grey matter (tens of thousands of voxels at 1.8 mm).
        let mask: Vec<usize> = (0..subject.tissue.len())
            .filter(|&i| subject.tissue[i] == Tissue::Grey)
            .collect();
        let mut spec = NiftiSpec::new(&grid.dims, [grid.voxel_mm; 3], Datatype::I16);
        spec.affine = Some(grid.affine());
        let mut state = 1u64;
        for v in 0..VOLUMES {
            let values: Vec<f32> = subject
                .baseline
                .iter()
                .map(|b| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    b + ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 40.0
                })
                .collect();
            write_nifti(&dir.join(format!("vol_{:04}.{ext}", v + 1)), &spec, &values).unwrap();
        }
        write_npy_indices(&dir.join("mask.npy"), &mask);

        let mut z = RollingZ::new(mask.len(), ZMode::Window(WINDOW), false);
        let (mut masked, mut scores, mut times, mut read_times) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for v in 0..VOLUMES {
            let t = Instant::now();
            let volume =
                read_volume_file(&dir.join(format!("vol_{:04}.{ext}", v + 1)), 1 << 26).unwrap();
            read_times.push(t.elapsed().as_secs_f64() * 1e3);
            Masks::gather(&mask, &volume.data, &mut masked);
            z.push(&masked, &mut scores);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        read_times.sort_by(f64::total_cmp);
        let ours = times[times.len() / 2];
        let read_part = read_times[read_times.len() / 2];
        let python = Command::new("python3")
            .args([
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("bench/python_baseline.py")
                    .to_str()
                    .unwrap(),
                dir.to_str().unwrap(),
                dir.join("mask.npy").to_str().unwrap(),
                &WINDOW.to_string(),
            ])
            .output();
        match python {
            Ok(out) if out.status.success() => {
                let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let theirs = report["median_ms"].as_f64().unwrap();
                let ratio = theirs / ours;
                println!(
                    "{label}, {} mask voxels: ours {ours:.2} ms/volume (read {read_part:.2}), Python {theirs:.2} ms/volume: {ratio:.1}x faster (budget 5x: {})",
                    mask.len(),
                    if ratio >= 5.0 { "met" } else { "MISSED" }
                );
            }
            Ok(out) => println!(
                "{label}: ours {ours:.2} ms/volume; Python baseline failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => println!("{label}: ours {ours:.2} ms/volume; python3 not found ({e})"),
        }
    }
}
