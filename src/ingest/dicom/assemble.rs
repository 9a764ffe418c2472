//! Single slices → volumes, as they arrive and in any order.
//!
//! A volume is emitted when its last slice arrives: the slice count is `ingest.slices_per_volume`
//! if set, else the header's ImagesInAcquisition, else learned from the first volume (complete
//! when a slice of a later volume arrives). A volume still short of slices `timeout` after its
//! first slice is reported once, with how many it had; it stays open, so slices that come after
//! all still make it (the sequencer then flags it late). Pure logic with injected time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::classic::Slice;
use super::pixels::StoredPixels;
use super::stack::{stack, Stacked};

#[derive(Debug, Clone, Default)]
pub struct AssembleSettings {
    /// Slices per volume (0 = from the header or learned).
    pub slices_per_volume: usize,
}

/// What the assembler has to say after a slice or a tick.
#[derive(Debug)]
pub enum Assembled {
    Volume {
        index: u32,
        volume: Box<Stacked>,
        /// The volume's last slice file (names it in the log).
        path: PathBuf,
    },
    /// The slices of a volume do not make a volume (e.g. two at one position).
    Failed {
        index: u32,
        path: PathBuf,
        reason: String,
    },
    /// Still short of slices at its deadline.
    Partial {
        index: u32,
        have: usize,
        expected: Option<usize>,
        path: PathBuf,
    },
}

struct Pending {
    /// By InstanceNumber: a re-sent slice replaces the first copy.
    slices: BTreeMap<i64, (PathBuf, Slice)>,
    first_ns: u64,
    reported: bool,
}

impl Assembled {
    /// Why a `Partial` volume is not a volume, for the log and errors.
    pub fn partial_reason(index: u32, have: usize, expected: Option<usize>) -> String {
        format!(
            "volume {index}: {have} of {} slices; the rest never came",
            expected.map_or("its".to_string(), |n| n.to_string())
        )
    }
}

impl Pending {
    /// The slice count its slices' headers announce.
    fn header_count(&self) -> Option<usize> {
        self.slices
            .values()
            .next()
            .and_then(|(_, s)| s.images_in_acquisition)
    }

    fn partial(&self, index: u32, expected: Option<usize>) -> Assembled {
        Assembled::Partial {
            index,
            have: self.slices.len(),
            expected: expected.or(self.header_count()),
            path: self
                .slices
                .values()
                .last()
                .map(|(p, _)| p.clone())
                .unwrap_or_default(),
        }
    }
}

pub struct SliceAssembler {
    settings: AssembleSettings,
    learned: Option<usize>,
    open: BTreeMap<u32, Pending>,
}

impl SliceAssembler {
    pub fn new(settings: AssembleSettings) -> SliceAssembler {
        SliceAssembler {
            settings,
            learned: None,
            open: BTreeMap::new(),
        }
    }

    fn configured(&self) -> Option<usize> {
        (self.settings.slices_per_volume > 0).then_some(self.settings.slices_per_volume)
    }

    /// The slice count a volume needs, when known.
    pub fn expected(&self, slice: Option<&Slice>) -> Option<usize> {
        self.configured()
            .or_else(|| slice.and_then(|s| s.images_in_acquisition))
            .or(self.learned)
    }

    /// Adds one slice; returns the volumes it completes.
    pub fn add(&mut self, path: &Path, slice: Slice, now_ns: u64) -> Vec<Assembled> {
        let mut out = Vec::new();
        let Some(index) = slice.volume_index(self.configured()) else {
            out.push(Assembled::Failed {
                index: 0,
                path: path.to_owned(),
                reason: "no InstanceNumber/ImagesInAcquisition, TemporalPositionIdentifier or \
                         AcquisitionNumber says which volume this slice belongs to"
                    .into(),
            });
            return out;
        };
        let expected = self.expected(Some(&slice));
        let pending = self.open.entry(index).or_insert_with(|| Pending {
            slices: BTreeMap::new(),
            first_ns: now_ns,
            reported: false,
        });
        pending
            .slices
            .insert(slice.instance, (path.to_owned(), slice));
        match expected {
            Some(n) if pending.slices.len() >= n => {
                if let Some(pending) = self.open.remove(&index) {
                    out.push(build(index, pending));
                }
            }
            Some(_) => {}
            None => {
                // Learning: a slice of a later volume closes every earlier one.
                let earlier: Vec<u32> = self.open.range(..index).map(|(&i, _)| i).collect();
                for i in earlier {
                    if let Some(pending) = self.open.remove(&i) {
                        self.learned.get_or_insert(pending.slices.len());
                        out.push(build(i, pending));
                    }
                }
            }
        }
        out
    }

    /// Reports volumes still incomplete `timeout_ns` after their first slice (once each), and
    /// forgets those open for 20 timeouts.
    pub fn tick(&mut self, now_ns: u64, timeout_ns: u64) -> Vec<Assembled> {
        let expected = self.configured().or(self.learned);
        let mut out = Vec::new();
        self.open.retain(|&index, pending| {
            let age = now_ns.saturating_sub(pending.first_ns);
            if age >= timeout_ns && !pending.reported {
                pending.reported = true;
                out.push(pending.partial(index, expected));
            }
            age < timeout_ns.saturating_mul(20)
        });
        out
    }

    /// The earliest time `tick` has something to report.
    pub fn next_deadline_ns(&self, timeout_ns: u64) -> Option<u64> {
        self.open
            .values()
            .filter(|p| !p.reported)
            .map(|p| p.first_ns + timeout_ns)
            .min()
    }

    /// At the end of a run: whatever is open, as volumes when the count was never known
    /// (the last volume of a learned series), else as partial.
    pub fn finish(&mut self) -> Vec<Assembled> {
        let expected = self.configured().or(self.learned);
        let open = std::mem::take(&mut self.open);
        open.into_iter()
            .map(
                |(index, pending)| match expected.or(pending.header_count()) {
                    Some(n) if pending.slices.len() < n => pending.partial(index, Some(n)),
                    _ => build(index, pending),
                },
            )
            .collect()
    }
}

fn build(index: u32, pending: Pending) -> Assembled {
    let Some((path, first)) = pending
        .slices
        .values()
        .last()
        .map(|(p, s)| (p.clone(), s.clone()))
    else {
        return Assembled::Failed {
            index,
            path: PathBuf::new(),
            reason: "no slices".into(),
        };
    };
    if let Some((other, _)) = pending
        .slices
        .values()
        .find(|(_, s)| !s.grid.same_as(&first.grid) || s.datatype != first.datatype)
    {
        return Assembled::Failed {
            index,
            path: other.clone(),
            reason: format!(
                "volume {index}: this slice's grid, orientation or datatype differs from the \
                 volume's other slices"
            ),
        };
    }
    let planes = pending.slices.into_values().map(|(_, s)| s.plane).collect();
    match stack(
        &first.grid,
        planes,
        first.thickness,
        first.datatype,
        first.tr_s,
        &StoredPixels::none(),
        &path,
    ) {
        Ok(volume) => Assembled::Volume {
            index,
            volume: Box::new(volume),
            path,
        },
        Err(e) => Assembled::Failed {
            index,
            path,
            reason: format!("volume {index}: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::dicom::stack::{Pixels, Plane, PlaneGrid};
    use crate::ingest::Datatype;

    /// Slice `k` (0-based) of volume `volume` in a run of `per_volume` slices; `announced`
    /// says whether the header carries ImagesInAcquisition.
    fn slice(volume: i64, k: usize, per_volume: usize, announced: bool) -> Slice {
        Slice {
            instance: (volume - 1) * per_volume as i64 + k as i64 + 1,
            images_in_acquisition: announced.then_some(per_volume),
            temporal_position: (!announced).then_some(volume),
            acquisition: None,
            grid: PlaneGrid::new(
                2,
                2,
                [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                [1.0, 1.0],
                Path::new("t"),
            )
            .unwrap(),
            plane: Plane {
                position: [0.0, 0.0, 3.0 * k as f64],
                pixels: Pixels::Values(vec![volume as f32; 4]),
                time_s: Some(0.1 * k as f64),
            },
            thickness: 3.0,
            datatype: Datatype::I16,
            tr_s: Some(2.0),
        }
    }

    fn indices(items: &[Assembled]) -> Vec<String> {
        items
            .iter()
            .map(|a| match a {
                Assembled::Volume { index, volume, .. } => {
                    format!("v{index}:{}", volume.geometry.dims[2])
                }
                Assembled::Failed { index, .. } => format!("f{index}"),
                Assembled::Partial {
                    index,
                    have,
                    expected,
                    ..
                } => format!("p{index}:{have}/{expected:?}"),
            })
            .collect()
    }

    #[test]
    fn a_volume_is_emitted_when_its_last_slice_arrives_in_any_order() {
        let mut a = SliceAssembler::new(AssembleSettings::default());
        let p = Path::new("s");
        // Volume 2's slices interleaved with volume 1's, reversed.
        let mut out = Vec::new();
        for k in (0..3).rev() {
            out.extend(a.add(p, slice(2, k, 3, true), 0));
            out.extend(a.add(p, slice(1, k, 3, true), 0));
        }
        assert_eq!(indices(&out), ["v2:3", "v1:3"]);
        // A re-sent slice replaces the first copy instead of counting twice.
        assert!(a.add(p, slice(3, 0, 3, true), 0).is_empty());
        assert!(a.add(p, slice(3, 0, 3, true), 0).is_empty());
        assert_eq!(
            indices(&a.add(p, slice(3, 1, 3, true), 0)),
            Vec::<String>::new()
        );
        assert_eq!(indices(&a.add(p, slice(3, 2, 3, true), 0)), ["v3:3"]);
    }

    #[test]
    fn slices_that_stop_coming_are_reported_once_and_may_still_complete() {
        let mut a = SliceAssembler::new(AssembleSettings::default());
        let p = Path::new("s");
        a.add(p, slice(1, 0, 4, true), 100);
        a.add(p, slice(1, 1, 4, true), 150);
        assert_eq!(a.next_deadline_ns(1000), Some(1100));
        assert!(a.tick(1099, 1000).is_empty());
        assert_eq!(indices(&a.tick(1100, 1000)), ["p1:2/Some(4)"]);
        assert!(a.tick(5000, 1000).is_empty(), "reported once");
        a.add(p, slice(1, 2, 4, true), 6000);
        assert_eq!(indices(&a.add(p, slice(1, 3, 4, true), 6001)), ["v1:4"]);
    }

    #[test]
    fn without_a_count_the_first_volume_teaches_it() {
        let mut a = SliceAssembler::new(AssembleSettings::default());
        let p = Path::new("s");
        for k in 0..5 {
            assert!(a.add(p, slice(1, k, 5, false), 0).is_empty());
        }
        // The first slice of volume 2 closes volume 1 (5 slices)...
        assert_eq!(indices(&a.add(p, slice(2, 0, 5, false), 0)), ["v1:5"]);
        // ...and from then on 5 is the count.
        let mut out = Vec::new();
        for k in 1..5 {
            out.extend(a.add(p, slice(2, k, 5, false), 0));
        }
        assert_eq!(indices(&out), ["v2:5"]);
        // A configured count wins over the header and over learning.
        let mut a = SliceAssembler::new(AssembleSettings {
            slices_per_volume: 2,
        });
        a.add(p, slice(1, 0, 2, false), 0);
        assert_eq!(indices(&a.add(p, slice(1, 1, 2, false), 0)), ["v1:2"]);
        // At the end, a short volume is partial.
        a.add(p, slice(2, 0, 2, false), 0);
        assert_eq!(indices(&a.finish()), ["p2:1/Some(2)"]);
    }
}
