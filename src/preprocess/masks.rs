//! ROI masks: a NIfTI label image and a table that maps labels to the two voxel groups the
//! method uses: `detail` (all visual areas → CLIP's intermediate layers) and `semantic`
//! (high-level areas → CLIP's final layer). Masks are lists of flat voxel indices in the
//! volume's own order, fixed at start-up after the label image's grid is checked against the
//! volumes'.
//!
//! The table is tab-separated with a header naming at least `index`, `name` and `group`;
//! group `low` counts for detail, `high` for detail and semantic, anything else for neither
//! (the simulator writes exactly this as `*_dseg.tsv`).

use std::path::{Path, PathBuf};

use crate::ingest::{read_volume_file, Geometry, ReadError};
use crate::tsv::{cell, Table};

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("mask label image: {0}")]
    Read(#[from] ReadError),
    #[error("{path}: {message}")]
    Table { path: PathBuf, message: String },
    #[error("{labels}: its grid differs from the volumes' ({volumes}): {detail}")]
    Geometry {
        labels: PathBuf,
        volumes: String,
        detail: String,
    },
    #[error("{path}: the `{group}` group has no voxels; expected labels {labels:?} to cover some")]
    Empty {
        path: PathBuf,
        group: &'static str,
        labels: Vec<u32>,
    },
}

#[derive(Debug, Clone)]
pub struct LabelInfo {
    pub label: u32,
    pub name: String,
    pub group: String,
    pub voxels: usize,
}

#[derive(Debug, Clone)]
pub struct Masks {
    /// Flat indices of every visual-area voxel.
    pub detail: Vec<usize>,
    /// Flat indices of the high-level voxels.
    pub semantic: Vec<usize>,
    pub labels: Vec<LabelInfo>,
    pub geometry: Geometry,
}

fn read_table(path: &Path) -> Result<Vec<(u32, String, String)>, MaskError> {
    let err = |message: String| MaskError::Table {
        path: path.to_owned(),
        message,
    };
    let table = Table::read(path).map_err(err)?;
    let expected = "tab-separated columns index, name, group";
    let (ci, cn, cg) = (
        table.column("index", expected).map_err(err)?,
        table.column("name", expected).map_err(err)?,
        table.column("group", expected).map_err(err)?,
    );
    let mut rows = Vec::new();
    for (line, cells) in table.rows() {
        let get = |c: usize| cell(cells, c, line).map_err(err);
        let index = get(ci)?;
        let label: u32 = index.parse().map_err(|_| {
            err(format!(
                "line {line}: index {index:?} is not a label number"
            ))
        })?;
        rows.push((label, get(cn)?.to_string(), get(cg)?.to_string()));
    }
    Ok(rows)
}

impl Masks {
    /// Loads the label image and table and checks the grid against `volumes` (dims exactly,
    /// voxel size and affine within `tolerance_mm`).
    pub fn load(
        labels: &Path,
        table: &Path,
        volumes: &Geometry,
        tolerance_mm: f64,
    ) -> Result<Masks, MaskError> {
        let image = read_volume_file(labels, 1 << 28)?;
        let geometry = image.header.geometry();
        if let Some(detail) = volumes.mismatch(&geometry, tolerance_mm) {
            return Err(MaskError::Geometry {
                labels: labels.to_owned(),
                volumes: format!("dims {:?}, voxel {:?} mm", volumes.dims, volumes.voxel_size),
                detail,
            });
        }
        let rows = read_table(table)?;
        let mut info: Vec<LabelInfo> = rows
            .iter()
            .map(|(l, n, g)| LabelInfo {
                label: *l,
                name: n.clone(),
                group: g.clone(),
                voxels: 0,
            })
            .collect();
        let (mut detail, mut semantic) = (Vec::new(), Vec::new());
        for (index, &value) in image.data.iter().enumerate() {
            if !(value.is_finite() && value > 0.0) {
                continue;
            }
            let label = value.round() as u32;
            if let Some(entry) = info.iter_mut().find(|i| i.label == label) {
                entry.voxels += 1;
                match entry.group.as_str() {
                    "low" => detail.push(index),
                    "high" => {
                        detail.push(index);
                        semantic.push(index);
                    }
                    _ => {}
                }
            }
        }
        let labels_of = |groups: &[&str]| {
            info.iter()
                .filter(|i| groups.contains(&i.group.as_str()))
                .map(|i| i.label)
                .collect::<Vec<_>>()
        };
        if detail.is_empty() {
            return Err(MaskError::Empty {
                path: labels.to_owned(),
                group: "detail",
                labels: labels_of(&["low", "high"]),
            });
        }
        if semantic.is_empty() {
            return Err(MaskError::Empty {
                path: labels.to_owned(),
                group: "semantic",
                labels: labels_of(&["high"]),
            });
        }
        for i in &info {
            tracing::info!(
                "mask label {} {} ({}): {} voxels",
                i.label,
                i.name,
                i.group,
                i.voxels
            );
        }
        Ok(Masks {
            detail,
            semantic,
            labels: info,
            geometry,
        })
    }

    /// The values of `volume` at the mask's voxels, appended to `out` (cleared first).
    pub fn gather(indices: &[usize], volume: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            indices
                .iter()
                .map(|&i| volume.get(i).copied().unwrap_or(0.0)),
        );
    }
}
