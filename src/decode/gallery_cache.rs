//! The gallery's embeddings and thumbnails kept between runs, so a second start does not embed
//! the same images again: one file in the gallery folder, keyed by the SHA-256 of everything
//! the result depends on (this crate's version, the encoder's files, every image's name and
//! bytes). A changed encoder or image gives another key and the gallery is embedded again; a
//! cut or altered file fails its trailing checksum and is rebuilt with a warning, never used.
//! A folder that cannot be written (read-only stimuli) just goes without the cache.
//!
//! It stores and checks; `retrieval::Gallery::load` decides when to embed.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The cache's file in the gallery folder (hidden; the gallery lists only images).
pub const CACHE_FILE: &str = ".brainmclip-gallery-cache";
const MAGIC: &[u8; 8] = b"BMCGAL1\n";

/// What the embeddings depend on. Reads every file named; an unreadable one is an error.
pub fn key(encoder: &Path, dir: &Path, names: &[String]) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let mut encoder_files: Vec<PathBuf> = std::fs::read_dir(encoder)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    encoder_files.sort();
    for path in encoder_files
        .iter()
        .chain(names.iter().map(|n| dir.join(n)).collect::<Vec<_>>().iter())
    {
        let bytes = std::fs::read(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().into())
}

pub struct Cached {
    pub embeddings: Vec<Vec<f32>>,
    pub thumbnails: Vec<Vec<u8>>,
}

fn u64_at(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let v = u64::from_le_bytes(bytes.get(*at..*at + 8)?.try_into().ok()?);
    *at += 8;
    Some(v)
}

/// The cached result for `key` and exactly these `names`, or why there is none usable
/// (`Ok(None)`: no cache or another key, the normal miss; `Err`: a damaged file).
pub fn read(dir: &Path, key: &[u8; 32], names: &[String]) -> Result<Option<Cached>, String> {
    let path = dir.join(CACHE_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let damaged = |what: &str| format!("{}: {what}; embedding the gallery again", path.display());
    if bytes.len() < MAGIC.len() + 32 + 32 || &bytes[..8] != MAGIC {
        return Err(damaged("not a gallery cache"));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != trailer {
        return Err(damaged("its checksum does not match (cut or altered)"));
    }
    if &body[8..40] != key {
        return Ok(None);
    }
    let mut at = 40;
    let mut parse = || -> Option<Cached> {
        let n = u64_at(body, &mut at)? as usize;
        let dim = u64_at(body, &mut at)? as usize;
        let thumb = u64_at(body, &mut at)? as usize;
        if n != names.len() {
            return None;
        }
        for name in names {
            let len = u64_at(body, &mut at)? as usize;
            if body.get(at..at + len)? != name.as_bytes() {
                return None;
            }
            at += len;
        }
        let mut embeddings = Vec::with_capacity(n);
        for _ in 0..n {
            let raw = body.get(at..at + 4 * dim)?;
            embeddings.push(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            );
            at += 4 * dim;
        }
        let mut thumbnails = Vec::with_capacity(n);
        for _ in 0..n {
            thumbnails.push(body.get(at..at + thumb)?.to_vec());
            at += thumb;
        }
        (at == body.len()).then_some(Cached {
            embeddings,
            thumbnails,
        })
    };
    parse()
        .map(Some)
        .ok_or_else(|| damaged("its layout does not match its names"))
}

/// Stores the result for `key` (atomically); false when the folder cannot be written.
pub fn write(dir: &Path, key: &[u8; 32], names: &[String], cached: &Cached) -> bool {
    let dim = cached.embeddings.first().map_or(0, Vec::len);
    let thumb = cached.thumbnails.first().map_or(0, Vec::len);
    if cached.embeddings.iter().any(|e| e.len() != dim)
        || cached.thumbnails.iter().any(|t| t.len() != thumb)
    {
        return false;
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(key);
    for v in [names.len(), dim, thumb] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    for name in names {
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    for e in &cached.embeddings {
        for v in e {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for t in &cached.thumbnails {
        out.extend_from_slice(t);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    crate::atomic::write_atomic(&dir.join(CACHE_FILE), &out).is_ok()
}
