//! `inspect` on DICOM and `convert`: what series an export folder holds, and one of them as a
//! 4-D NIfTI with its BIDS sidecar.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use brainmclip::ingest::dicom::convert::{convert_series, ConvertOptions};
use brainmclip::ingest::dicom::{is_dicom_name, scan_folder, summarize, SeriesChoice};
use brainmclip::ingest::FileKind;

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The DICOM export folder.
    source: PathBuf,
    /// The 4-D NIfTI to write (`.nii` or `.nii.gz`); the sidecar goes next to it as `.json`.
    #[arg(long)]
    out: PathBuf,
    /// Which series: "auto" (the first that looks like fMRI), a series number, or a regex on
    /// SeriesDescription.
    #[arg(long, default_value = "auto")]
    series: String,
    /// Single-slice series: slices per volume (0 = ImagesInAcquisition from the header).
    #[arg(long, default_value_t = 0)]
    slices_per_volume: usize,
    #[arg(long, default_value_t = 1 << 26)]
    max_voxels: usize,
}

/// A folder, or a file that is not named like NIfTI.
pub fn is_dicom_input(path: &Path) -> bool {
    path.is_dir()
        || (FileKind::of(path).is_none()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_dicom_name))
}

pub fn inspect_cmd(path: &Path, max_voxels: usize, as_json: bool) -> Result<()> {
    let (dir, only) = if path.is_dir() {
        (path.to_owned(), None)
    } else {
        let dir = path.parent().map_or(PathBuf::from("."), Path::to_owned);
        (dir, Some(path.to_owned()))
    };
    let mut found = scan_folder(&dir)?;
    if let Some(file) = &only {
        found.retain_mut(|s| {
            s.files.retain(|(p, _)| p == file);
            !s.files.is_empty()
        });
    }
    anyhow::ensure!(
        !found.is_empty(),
        "{}: no DICOM files found (expected a scanner export folder or a .dcm file)",
        path.display()
    );
    let summaries: Vec<_> = found.iter().map(|s| summarize(s, max_voxels)).collect();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    for s in &summaries {
        println!(
            "series {} {:?}: {} ({}), {} files{}",
            s.number.map_or("-".into(), |n| n.to_string()),
            s.description,
            s.layout.name(),
            if s.manufacturer.is_empty() {
                "manufacturer not given"
            } else {
                &s.manufacturer
            },
            s.files,
            if s.looks_like_fmri {
                ", looks like fMRI"
            } else {
                ""
            }
        );
        if let Some(problem) = &s.problem {
            println!("  cannot be read as volumes: {problem}");
            continue;
        }
        println!(
            "  {} volumes of {} x {} x {}, voxels {:.3} x {:.3} x {:.3} mm, axes {}",
            s.volumes,
            s.dims[0],
            s.dims[1],
            s.dims[2],
            s.voxel_size_mm[0],
            s.voxel_size_mm[1],
            s.voxel_size_mm[2],
            s.orientation
        );
        println!(
            "  TR {}, image type {}",
            s.tr_s.map_or("not given".into(), |t| format!("{t} s")),
            s.image_type.join("\\")
        );
        match &s.slice_times_s {
            Some(times) => println!(
                "  slice timing (s, in volume z order): {}",
                times
                    .iter()
                    .map(|t| format!("{t}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => println!("  slice timing: not in the files"),
        }
    }
    Ok(())
}

pub fn convert_cmd(args: ConvertArgs) -> Result<()> {
    let series = SeriesChoice::parse(&args.series).with_context(|| {
        format!(
            "--series {:?}: not \"auto\", a number or a regex",
            args.series
        )
    })?;
    let converted = convert_series(
        &args.source,
        &args.out,
        &ConvertOptions {
            series,
            slices_per_volume: args.slices_per_volume,
            max_voxels: args.max_voxels,
        },
    )?;
    println!(
        "series {} {:?}: {} volumes of {:?} ({}) → {} and {}",
        converted
            .series_number
            .map_or("-".into(), |n| n.to_string()),
        converted.description,
        converted.indices.len(),
        converted.dims,
        converted.datatype,
        converted.nifti.display(),
        converted.sidecar.display()
    );
    let gaps = converted.gaps();
    if !gaps.is_empty() {
        eprintln!(
            "warning: volumes {gaps:?} are not in the folder; the run skips them (VolumeIndices in \
             the sidecar lists what was written)"
        );
    }
    Ok(())
}
