//! Training checkpoints shared by every training job: `model.mpk`, `optim.mpk` (burn's named
//! MessagePack records, full precision) and `state.json` (the job's own progress), in one
//! folder. Each file is written beside its final name and renamed, and the state last, so an
//! interrupted save leaves the previous checkpoint usable.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CheckpointError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl std::fmt::Display) -> CheckpointError {
    CheckpointError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

pub fn save<B, M, O, S>(dir: &Path, model: &M, optim: &O, state: &S) -> Result<(), CheckpointError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    S: Serialize,
{
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    model
        .clone()
        .save_file(dir.join("model_partial"), &rec)
        .map_err(|e| err(dir, e))?;
    Recorder::<B>::record(&rec, optim.to_record(), dir.join("optim_partial"))
        .map_err(|e| err(dir, e))?;
    for name in ["model", "optim"] {
        let to = dir.join(format!("{name}.mpk"));
        std::fs::rename(dir.join(format!("{name}_partial.mpk")), &to).map_err(|e| err(&to, e))?;
    }
    let path = dir.join("state.json");
    let text = serde_json::to_string(state).map_err(|e| err(&path, e))?;
    crate::atomic::write_atomic(&path, text.as_bytes()).map_err(|e| err(&path, e))
}

/// The checkpoint in `dir`, loaded into `fresh` model and optimiser; None when there is none.
/// `accept` checks the state (e.g. that it was made with the same config).
pub fn load<B, M, O, S>(
    dir: &Path,
    fresh: M,
    optim: O,
    device: &B::Device,
    accept: impl FnOnce(&S) -> Result<(), String>,
) -> Result<Option<(M, O, S)>, CheckpointError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
    S: DeserializeOwned,
{
    let path = dir.join("state.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e))?;
    let state: S = serde_json::from_str(&text)
        .map_err(|e| err(&path, format!("not a checkpoint state: {e}")))?;
    accept(&state).map_err(|m| err(&path, m))?;
    let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let model = fresh
        .load_file(dir.join("model"), &rec, device)
        .map_err(|e| err(&dir.join("model.mpk"), e))?;
    let record = Recorder::<B>::load(&rec, dir.join("optim"), device)
        .map_err(|e| err(&dir.join("optim.mpk"), e))?;
    Ok(Some((model, optim.load_record(record), state)))
}
