//! The recorder: the session's files in `output.dir`. `events.jsonl` has one JSON line per
//! event (every volume, gap, sample, decoded trial, image, command, error, with ns times);
//! `qa.tsv` one row per preprocessed volume, its columns named as fMRIPrep's confounds
//! (`trans_x` mm, `rot_x` radians, `framewise_displacement`, `dvars`, `std_dvars`,
//! `global_signal`, then ours: mean z-scores, tSNR medians, the monitor's flags);
//! `reconstructions/trial-NNNN.png` each drawn image; at the end `tsnr.nii.gz` (the run's tSNR
//! map) and `carpet.nii.gz` (the carpet plot's voxels × volumes, rows grouped as the
//! `quality_maps` record says), which the report reads. Both logs are written as
//! `<name>.partial`, a whole line at a time (a crash loses nothing written), and synced and
//! renamed to their final names when the run ends: a file under its final name is always
//! complete. An earlier session's files are never overwritten (`events-2.jsonl`, ...).
//!
//! A failing disk never stops the session: lines and images that cannot be written wait in
//! memory and are written when the disk takes them (`line_file`), each failure reported once
//! with the file and the OS error, and once more when writing resumes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::carpet_spool::CarpetSpool;
use super::line_file::{LineFile, WriteFaults};
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

/// Reconstructions kept in memory at most while they cannot be written (the newest are kept).
const WAITING_IMAGES: usize = 512;

pub struct Recorder {
    log: Option<LineFile>,
    qa: Option<LineFile>,
    dir: PathBuf,
    /// This session's number in `dir` (`numbered`).
    number: u32,
    images: PathBuf,
    log_path: PathBuf,
    qa_path: PathBuf,
    /// The carpet plot's rows as they came, one per volume, until the maps arrive.
    carpet: CarpetSpool,
    /// Encoded PNGs not yet written, oldest first, and whether that is being reported.
    waiting_images: VecDeque<(PathBuf, Vec<u8>)>,
    images_failing: bool,
    faults: WriteFaults,
}

impl Recorder {
    /// Creates `dir` and the session's files in it.
    pub fn create(dir: &Path) -> Result<Recorder, SinkError> {
        Recorder::create_with_faults(dir, WriteFaults::default())
    }

    /// As `create`, with writes that fail while `faults` says so (drills and tests).
    pub fn create_with_faults(dir: &Path, faults: WriteFaults) -> Result<Recorder, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
        let number = free_number(dir);
        let log_path = dir.join(numbered("events", number, "jsonl"));
        let qa_path = dir.join(numbered("qa", number, "tsv"));
        let log = LineFile::create(log_path.clone(), faults.clone())?;
        let mut qa = LineFile::create(qa_path.clone(), faults.clone())?;
        qa.line(QA_HEADER)?;
        Ok(Recorder {
            log: Some(log),
            qa: Some(qa),
            dir: dir.to_owned(),
            number,
            images: dir.join("reconstructions"),
            log_path,
            qa_path,
            carpet: CarpetSpool::new(dir.join(format!(".carpet-{number}.f32"))),
            waiting_images: VecDeque::new(),
            images_failing: false,
            faults,
        })
    }

    /// The final names of the event log and the QA table.
    pub fn paths(&self) -> (PathBuf, PathBuf) {
        (self.log_path.clone(), self.qa_path.clone())
    }

    /// `reconstructions/trial-NNNN.png`, encoded now and queued; written (atomically) with
    /// any that wait before it.
    fn save_image(&mut self, r: &Reconstruction) -> Result<PathBuf, SinkError> {
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
        let mut png = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| SinkError::Other(format!("{}: cannot encode: {e}", path.display())))?;
        if self.waiting_images.len() >= WAITING_IMAGES {
            self.waiting_images.pop_front();
        }
        self.waiting_images
            .push_back((path.clone(), png.into_inner()));
        Ok(path)
    }

    /// Writes the images that wait, oldest first; reports when that starts failing and when it
    /// resumes.
    fn write_waiting_images(&mut self) -> Result<(), SinkError> {
        let waited = self.waiting_images.len();
        while let Some((path, png)) = self.waiting_images.front() {
            let written = self
                .faults
                .check()
                .and_then(|()| crate::atomic::write_atomic(path, png));
            if let Err(e) = written {
                if self.images_failing {
                    return Ok(());
                }
                self.images_failing = true;
                return Err(SinkError::Other(format!(
                    "{}: cannot write: {e}; reconstructions wait in memory (the newest \
                     {WAITING_IMAGES}) and are written when the disk takes them",
                    path.display()
                )));
            }
            self.waiting_images.pop_front();
        }
        if std::mem::take(&mut self.images_failing) {
            return Err(SinkError::Other(format!(
                "{}: writing again; the {waited} reconstructions waiting are written",
                self.images.display()
            )));
        }
        Ok(())
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
        let (data, rows) = self.carpet.take()?;
        let volumes = rows.max(1);
        let voxels = data.len() / volumes;
        let mut spec = NiftiSpec::new(&[voxels, 1, 1, volumes], [1.0; 3], Datatype::F32);
        spec.description = "brainmclip carpet: mask voxels x volumes".into();
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
        let mut reports = Vec::new();
        match event {
            SessionEvent::Volume(v) => {
                if let Some(row) = &v.carpet {
                    reports.extend(self.carpet.push(row).err());
                }
                if let Some(qa) = self.qa.as_mut() {
                    reports.extend(qa.line(&qa_row(v)).err());
                }
            }
            SessionEvent::QualityMaps(maps) => match self.save_maps(maps) {
                Ok([tsnr, carpet]) => {
                    record["tsnr_file"] = tsnr.display().to_string().into();
                    record["carpet_file"] = carpet.display().to_string().into();
                }
                Err(e) => reports.push(e),
            },
            SessionEvent::Generated(r) => match self.save_image(r) {
                // The name it has, or will have once the disk takes it.
                Ok(path) => record["file"] = path.display().to_string().into(),
                // The record is logged all the same; the error is reported after it.
                Err(e) => reports.push(e),
            },
            _ => {}
        }
        if !self.waiting_images.is_empty() {
            reports.extend(self.write_waiting_images().err());
        }
        if let Some(log) = self.log.as_mut() {
            reports.extend(log.line(&record.to_string()).err());
        }
        match reports.len() {
            0 => Ok(()),
            1 => Err(reports.remove(0)),
            _ => Err(SinkError::Several(reports)),
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let mut reports = Vec::new();
        if !self.waiting_images.is_empty() {
            let report = self.write_waiting_images().err();
            match self.waiting_images.front() {
                Some((path, _)) => reports.push(SinkError::Other(format!(
                    "{}: {} reconstructions could not be written by the end, from this one on",
                    path.display(),
                    self.waiting_images.len()
                ))),
                None => reports.extend(report),
            }
        }
        for file in [self.log.take(), self.qa.take()].into_iter().flatten() {
            reports.extend(file.close().err());
        }
        match reports.len() {
            0 => Ok(()),
            1 => Err(reports.remove(0)),
            _ => Err(SinkError::Several(reports)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::line_file::WriteFault;

    fn drawn(trial: u64) -> SessionEvent {
        SessionEvent::Generated(Reconstruction {
            trial,
            stimulus: None,
            sample_ns: 1,
            decoded_ns: 2,
            generated_ns: 3,
            skipped_before: 0,
            size: 4,
            rgb: vec![trial as u8; 4 * 4 * 3],
        })
    }

    #[test]
    fn images_that_cannot_be_written_wait_and_are_written_when_the_disk_takes_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let faults = WriteFaults::default();
        let mut recorder =
            Recorder::create_with_faults(dir.path(), faults.clone()).expect("create");
        recorder.event(&drawn(1)).expect("healthy");
        faults.set(WriteFault::Denied);
        let report = recorder.event(&drawn(2)).expect_err("reported");
        // Both the image and the log line fail; each is named.
        let text = report.to_string();
        assert!(text.contains("trial-0002.png: cannot write"), "{text}");
        assert!(
            text.contains("events.jsonl.partial: cannot write"),
            "{text}"
        );
        recorder.event(&drawn(3)).expect("reported once");
        assert!(!dir.path().join("reconstructions/trial-0002.png").exists());
        faults.set(WriteFault::None);
        let resumed = recorder.event(&drawn(4)).expect_err("recovery reported");
        assert!(resumed.to_string().contains("writing again"), "{resumed}");
        recorder.finish().expect("finish");
        for trial in 1..=4u8 {
            let path = dir
                .path()
                .join(format!("reconstructions/trial-000{trial}.png"));
            let image = image::open(&path).expect("a whole PNG").to_rgb8();
            assert_eq!(image.as_raw(), &vec![trial; 48], "{}", path.display());
        }
        let log = std::fs::read_to_string(dir.path().join("events.jsonl")).expect("log");
        let trials: Vec<u64> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["trial"].as_u64())
            .map(|t| t.expect("a trial"))
            .collect();
        assert_eq!(trials, [1, 2, 3, 4]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("reconstructions"))
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
