//! The recorder: the session's files in `output.dir`. `events.jsonl` has one JSON line per
//! event (every volume, gap, sample, decoded trial, image, command, error, with ns times);
//! `qa.tsv` one row per preprocessed volume, its columns named as fMRIPrep's confounds
//! (`trans_x` mm, `rot_x` radians, `framewise_displacement`, `dvars`, `std_dvars`,
//! `global_signal`, then ours: mean z-scores, tSNR medians, the monitor's flags);
//! `reconstructions/trial-NNNN.png` each drawn image; at the end `tsnr.nii.gz` (the run's tSNR
//! map) and `carpet.nii.gz` (the carpet plot's voxels × volumes, rows grouped as the
//! `quality_maps` record says), which the report reads. Both logs are written as
//! `<name>.partial`, a whole line at a time and flushed (a crash loses nothing written), and
//! synced and renamed to their final names when the run ends: a file under its final name is
//! always complete. An earlier session's files are never overwritten (`events-2.jsonl`, ...).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Sink, SinkError};
use crate::decode::Reconstruction;
use crate::event::SessionEvent;
use crate::ingest::nifti_write::{write_nifti, NiftiSpec};
use crate::ingest::Datatype;
use crate::preprocess::quality::QualityMaps;
use crate::preprocess::stage::VolumeReport;

const QA_HEADER: &str = "index\ttrans_x\ttrans_y\ttrans_z\trot_x\trot_y\trot_z\tframewise_displacement\tdvars\tstd_dvars\tglobal_signal\tmean_z_detail\tmean_z_semantic\ttsnr_detail\ttsnr_semantic\tfd_over_limit\tdvars_spike";

/// Where a recorder file is written until the run ends.
pub fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The session's number in `dir`: 1 when `events.jsonl` is free, else the first n with
/// neither `events-n.jsonl` nor `qa-n.tsv` used by a finished or unfinished earlier session.
fn free_number(dir: &Path) -> u32 {
    let used = |path: PathBuf| path.exists() || partial(&path).exists();
    (1..)
        .find(|&n| {
            !used(dir.join(numbered("events", n, "jsonl")))
                && !used(dir.join(numbered("qa", n, "tsv")))
        })
        .unwrap_or(1)
}

/// `stem.ext` for the first session in a folder, `stem-n.ext` after.
pub fn numbered(stem: &str, n: u32, ext: &str) -> String {
    if n == 1 {
        format!("{stem}.{ext}")
    } else {
        format!("{stem}-{n}.{ext}")
    }
}

struct Open {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl Open {
    fn create(path: PathBuf) -> Result<Open, SinkError> {
        let file = File::create(partial(&path)).map_err(|e| SinkError::io(partial(&path), e))?;
        Ok(Open {
            writer: BufWriter::new(file),
            path,
        })
    }

    /// One whole line, flushed.
    fn line(&mut self, text: &str) -> Result<(), SinkError> {
        let written = self
            .writer
            .write_all(text.as_bytes())
            .and_then(|()| self.writer.write_all(b"\n"))
            .and_then(|()| self.writer.flush());
        written.map_err(|e| SinkError::io(partial(&self.path), e))
    }

    /// Synced to disk, then renamed to its final name.
    fn close(self) -> Result<PathBuf, SinkError> {
        let staged = partial(&self.path);
        let file = self
            .writer
            .into_inner()
            .map_err(|e| SinkError::io(&staged, e.into_error()))?;
        file.sync_all().map_err(|e| SinkError::io(&staged, e))?;
        std::fs::rename(&staged, &self.path).map_err(|e| SinkError::io(&self.path, e))?;
        Ok(self.path)
    }
}

pub struct Recorder {
    log: Option<Open>,
    qa: Option<Open>,
    dir: PathBuf,
    /// This session's number in `dir` (`numbered`).
    number: u32,
    images: PathBuf,
    log_path: PathBuf,
    qa_path: PathBuf,
    /// The carpet plot's rows as they came, one per volume, until the maps arrive.
    carpet: Vec<f32>,
    carpet_rows: usize,
}

impl Recorder {
    /// Creates `dir` and the session's files in it.
    pub fn create(dir: &Path) -> Result<Recorder, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
        let number = free_number(dir);
        let log_path = dir.join(numbered("events", number, "jsonl"));
        let qa_path = dir.join(numbered("qa", number, "tsv"));
        let log = Open::create(log_path.clone())?;
        let mut qa = Open::create(qa_path.clone())?;
        qa.line(QA_HEADER)?;
        Ok(Recorder {
            log: Some(log),
            qa: Some(qa),
            dir: dir.to_owned(),
            number,
            images: dir.join("reconstructions"),
            log_path,
            qa_path,
            carpet: Vec::new(),
            carpet_rows: 0,
        })
    }

    /// The final names of the event log and the QA table.
    pub fn paths(&self) -> (PathBuf, PathBuf) {
        (self.log_path.clone(), self.qa_path.clone())
    }

    /// `reconstructions/trial-NNNN.png`, written under a temporary name and renamed.
    fn save_image(&self, r: &Reconstruction) -> Result<PathBuf, SinkError> {
        std::fs::create_dir_all(&self.images).map_err(|e| SinkError::io(&self.images, e))?;
        let path = self.images.join(format!("trial-{:04}.png", r.trial));
        let image = image::RgbImage::from_raw(r.size as u32, r.size as u32, r.rgb.clone())
            .ok_or_else(|| {
                SinkError::Other(format!(
                    "{}: reconstruction of {} bytes is not {s}x{s} RGB",
                    path.display(),
                    r.rgb.len(),
                    s = r.size
                ))
            })?;
        let tmp = self.images.join(format!(".trial-{:04}.png.tmp", r.trial));
        image
            .save_with_format(&tmp, image::ImageFormat::Png)
            .map_err(|e| SinkError::Other(format!("{}: cannot write: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| SinkError::io(&path, e))?;
        Ok(path)
    }

    /// `tsnr.nii.gz` on the volumes' grid and `carpet.nii.gz` (voxels × 1 × 1 × volumes).
    fn save_maps(&mut self, maps: &QualityMaps) -> Result<[PathBuf; 2], SinkError> {
        let g = &maps.geometry;
        let tsnr = self.dir.join(numbered("tsnr", self.number, "nii.gz"));
        let mut spec = NiftiSpec::new(&g.dims, g.voxel_size, Datatype::F32);
        spec.affine = Some(g.affine);
        spec.description = "brainmclip tSNR".into();
        let failed = |path: &Path, e: crate::ingest::nifti_write::WriteError| {
            SinkError::Other(format!("{}: cannot write: {e}", path.display()))
        };
        write_nifti(&tsnr, &spec, &maps.tsnr).map_err(|e| failed(&tsnr, e))?;
        let carpet = self.dir.join(numbered("carpet", self.number, "nii.gz"));
        let volumes = self.carpet_rows.max(1);
        let voxels = self.carpet.len() / volumes;
        let mut spec = NiftiSpec::new(&[voxels, 1, 1, volumes], [1.0; 3], Datatype::F32);
        spec.description = "brainmclip carpet: mask voxels x volumes".into();
        let data = std::mem::take(&mut self.carpet);
        write_nifti(&carpet, &spec, &data).map_err(|e| failed(&carpet, e))?;
        Ok([tsnr, carpet])
    }
}

fn qa_row(v: &VolumeReport) -> String {
    let fmt = |v: Option<f32>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let fmt6 = |v: Option<f32>| v.map_or("n/a".to_string(), |v| format!("{v:.6}"));
    let m = v.monitor.as_ref();
    let translations = (0..3).map(|i| fmt(v.motion.map(|m| m[i])));
    // fMRIPrep writes rotations in radians.
    let rotations = (3..6).map(|i| fmt6(v.motion.map(|m| m[i].to_radians())));
    let tsnr = |group: &str| {
        fmt(m.and_then(|m| m.tsnr.iter().find(|t| t.group == group).map(|t| t.median)))
    };
    let flag = |f: fn(&crate::preprocess::monitor::MonitorFigures) -> bool| {
        m.map_or("n/a".to_string(), |m| u8::from(f(m)).to_string())
    };
    let mut cells = vec![v.index.to_string()];
    cells.extend(translations);
    cells.extend(rotations);
    cells.extend([
        fmt(v.fd),
        fmt(m.and_then(|m| m.dvars)),
        fmt(m.and_then(|m| m.std_dvars)),
        format!("{:.3}", v.global_signal),
        fmt(v.mean_z_detail),
        fmt(v.mean_z_semantic),
        tsnr("detail"),
        tsnr("semantic"),
        flag(|m| m.fd_over_limit),
        flag(|m| m.dvars_spike),
    ]);
    cells.join("\t")
}

impl Sink for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        let mut record = event.record();
        let mut image_error = None;
        match event {
            SessionEvent::Volume(v) => {
                if let Some(row) = &v.carpet {
                    let width = self.carpet.len().checked_div(self.carpet_rows);
                    // A row of another width (masks never change mid-run) is left out.
                    if width.is_none_or(|w| w == row.len()) {
                        self.carpet.extend_from_slice(row);
                        self.carpet_rows += 1;
                    }
                }
                if let Some(qa) = self.qa.as_mut() {
                    qa.line(&qa_row(v))?;
                }
            }
            SessionEvent::QualityMaps(maps) => match self.save_maps(maps) {
                Ok([tsnr, carpet]) => {
                    record["tsnr_file"] = tsnr.display().to_string().into();
                    record["carpet_file"] = carpet.display().to_string().into();
                }
                Err(e) => image_error = Some(e),
            },
            SessionEvent::Generated(r) => match self.save_image(r) {
                Ok(path) => record["file"] = path.display().to_string().into(),
                // The record is logged all the same; the error is reported after it.
                Err(e) => image_error = Some(e),
            },
            _ => {}
        }
        if let Some(log) = self.log.as_mut() {
            log.line(&record.to_string())?;
        }
        image_error.map_or(Ok(()), Err)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let log = self.log.take().map(Open::close);
        let qa = self.qa.take().map(Open::close);
        log.transpose()?;
        qa.transpose()?;
        Ok(())
    }
}
