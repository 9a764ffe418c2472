//! The ingest thread's DICOM side: which series to take (`ingest.series`), whole-volume files
//! straight to the sequencer, single slices through the assembler, and partial volumes reported
//! at their deadline with how many slices they had.
//!
//! The index of a DICOM file is in its header, so the tracker knows these files under
//! `INDEX_UNKNOWN` and the index is taken from the header once the file is read.

use std::collections::HashSet;
use std::path::Path;

use tracing::info;

use super::{StartError, Worker};
use crate::clock::now_ns;
use crate::config::IngestConfig;
use crate::ingest::dicom::{
    self, AssembleSettings, Assembled, Content, DicomError, FileHeader, SeriesChoice, SeriesKey,
    SliceAssembler, Stacked,
};
use crate::ingest::watch::look_at;
use crate::ingest::{ReadError, Volume};

/// The tracker's index for a file whose index only its header knows.
pub const INDEX_UNKNOWN: u32 = u32::MAX;

pub struct DicomInput {
    choice: SeriesChoice,
    chosen: Option<SeriesKey>,
    /// Series already reported as not taken (each is logged once).
    ignored: HashSet<SeriesKey>,
    /// Files that are not DICOM at all (each is logged once).
    not_dicom: HashSet<std::path::PathBuf>,
    assembler: SliceAssembler,
    slices_per_volume: usize,
}

impl DicomInput {
    pub fn new(config: &IngestConfig) -> Result<DicomInput, StartError> {
        let choice =
            SeriesChoice::parse(&config.series).map_err(|e| StartError::Series(e.to_string()))?;
        Ok(DicomInput {
            choice,
            chosen: None,
            ignored: HashSet::new(),
            not_dicom: HashSet::new(),
            assembler: SliceAssembler::new(AssembleSettings {
                slices_per_volume: config.slices_per_volume,
            }),
            slices_per_volume: config.slices_per_volume,
        })
    }

    /// The volume index a file present at start-up has (for `existing = "skip"`).
    pub fn index_from_header(&self, path: &Path) -> Option<u32> {
        let header = dicom::read_header(path).ok()?;
        if !self.choice.accepts(&header) {
            return None;
        }
        header.volume_index((self.slices_per_volume > 0).then_some(self.slices_per_volume))
    }
}

fn describe(header: &FileHeader) -> String {
    format!(
        "series {} {:?} ({}, {})",
        header
            .key
            .number
            .map_or("(no number)".to_string(), |n| n.to_string()),
        header.description,
        header.layout.name(),
        if header.manufacturer.is_empty() {
            "manufacturer not given"
        } else {
            &header.manufacturer
        }
    )
}

impl Worker {
    /// Whether a file's series is the one this run takes; logs each other series once.
    fn series_wanted(&mut self, header: &FileHeader) -> bool {
        let input = &mut self.dicom;
        if let Some(chosen) = &input.chosen {
            if *chosen == header.key {
                return true;
            }
        } else if input.choice.accepts(header) {
            input.chosen = Some(header.key.clone());
            info!("taking DICOM {} from the export folder", describe(header));
            return true;
        }
        if input.ignored.insert(header.key.clone()) {
            let message = format!(
                "DICOM {}: not the series this run takes (ingest.series = {:?}); its files are \
                 ignored",
                describe(header),
                match &input.choice {
                    SeriesChoice::Auto => "auto".to_string(),
                    SeriesChoice::Number(n) => n.to_string(),
                    SeriesChoice::Description(re) => re.to_string(),
                }
            );
            self.warn(message);
        }
        false
    }

    pub(super) fn read_dicom(&mut self, path: &Path, seen_ns: u64) {
        let before = look_at(path);
        let result = dicom::read_file(path, self.max_voxels).and_then(|file| {
            if look_at(path) == before {
                Ok(file)
            } else {
                Err(DicomError::Incomplete {
                    path: path.to_owned(),
                    detail: "it changed while being read".into(),
                })
            }
        });
        let file = match result {
            Ok(file) => file,
            Err(DicomError::NotDicom { path, detail }) => {
                // Not a scanner file: settle it so it is not read again, and say so once.
                self.tracker.read_succeeded(&path, before);
                if self.dicom.not_dicom.insert(path.clone()) {
                    self.warn(format!("{}: not DICOM ({detail}); ignored", path.display()));
                }
                return;
            }
            Err(error) => return self.read_failed(path, None, ReadError::Dicom(error)),
        };
        self.tracker.read_succeeded(path, before);
        if !self.series_wanted(&file.header) {
            return;
        }
        match file.content {
            Content::Volume { index, volume } => self.deliver_stacked(index, volume, path, seen_ns),
            Content::Slice(slice) => {
                self.learn_tr(slice.tr_s, path);
                let done = self.dicom.assembler.add(path, slice, now_ns());
                for item in done {
                    self.on_assembled(item, seen_ns);
                }
            }
        }
    }

    fn deliver_stacked(&mut self, index: u32, volume: Stacked, path: &Path, seen_ns: u64) {
        self.deliver(Volume {
            index,
            path: path.to_owned(),
            geometry: volume.geometry,
            data: volume.data,
            non_finite: volume.non_finite,
            seen_ns,
            read_ns: now_ns(),
            slice_times_s: volume.slice_times_s,
        });
    }

    fn on_assembled(&mut self, item: Assembled, seen_ns: u64) {
        match item {
            Assembled::Volume {
                index,
                volume,
                path,
            } => self.deliver_stacked(index, *volume, &path, seen_ns),
            Assembled::Failed {
                index,
                path,
                reason,
            } => {
                let index = (index > 0).then_some(index);
                self.sequencer.offer_rejected(index, path, reason, now_ns());
            }
            Assembled::Partial {
                index,
                have,
                expected,
                path,
            } => {
                let reason = Assembled::partial_reason(index, have, expected);
                self.sequencer
                    .offer_rejected(Some(index), path, reason, now_ns());
            }
        }
    }

    /// How long a volume's slices may take to arrive: one TR after its first slice.
    fn slice_timeout_ns(&self) -> u64 {
        self.sequencer.tr_ns().unwrap_or(2_000_000_000)
    }

    pub(super) fn dicom_deadline_ns(&self) -> Option<u64> {
        self.dicom
            .assembler
            .next_deadline_ns(self.slice_timeout_ns())
    }

    pub(super) fn tick_dicom(&mut self, now: u64) {
        let timeout = self.slice_timeout_ns();
        for item in self.dicom.assembler.tick(now, timeout) {
            self.on_assembled(item, now);
        }
    }

    /// At the end of the run: the last volume of a series whose slice count was learned, and
    /// whatever is still partial.
    pub(super) fn finish_dicom(&mut self, now: u64) {
        for item in self.dicom.assembler.finish() {
            self.on_assembled(item, now);
        }
    }
}
