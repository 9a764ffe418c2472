//! Finding the shipped weights (`assets/`, `calibration/`) from any working directory. A
//! relative path such as `calibration/demo` is looked for under, in order: the folder given
//! with `--assets` (then only there), the `BRAINMCLIP_ASSETS` environment variable, the
//! working directory, the executable's folder and its three parents (a release build lives in
//! `target/release/`), and the source tree the binary was built from. A folder counts only when
//! every file the caller needs is in it; otherwise the error lists what is missing and every
//! place looked. It loads nothing itself.

use std::path::{Path, PathBuf};

/// The environment variable naming a folder that holds `assets/` and `calibration/`.
pub const ASSETS_ENV: &str = "BRAINMCLIP_ASSETS";

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{what} not found: needs {} in {}; looked in: {}. Run from the repository, pass --assets DIR, or set {ASSETS_ENV}", needs.join(", "), relative.display(), looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Missing {
        what: String,
        relative: PathBuf,
        needs: Vec<String>,
        looked: Vec<PathBuf>,
    },
}

/// Where relative asset paths are looked for, first match wins.
pub fn search_roots(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())];
    }
    let mut roots = Vec::new();
    if let Some(dir) = std::env::var_os(ASSETS_ENV).filter(|v| !v.is_empty()) {
        roots.push(PathBuf::from(dir));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_owned));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut unique = Vec::new();
    for r in roots {
        if !unique.contains(&r) {
            unique.push(r);
        }
    }
    unique
}

/// The folder `path` (absolute, or relative to one of `roots`) holding every file in `needs`.
pub fn find(
    what: &str,
    path: &Path,
    needs: &[&str],
    roots: &[PathBuf],
) -> Result<PathBuf, AssetError> {
    let candidates: Vec<PathBuf> = if path.is_absolute() {
        vec![path.to_owned()]
    } else {
        roots.iter().map(|r| r.join(path)).collect()
    };
    candidates
        .iter()
        .find(|dir| needs.iter().all(|f| dir.join(f).is_file()))
        .cloned()
        .ok_or_else(|| AssetError::Missing {
            what: what.to_string(),
            relative: path.to_owned(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            looked: candidates,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_root_with_every_file_and_names_all_it_tried() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        // `a` has the folder but not every file; `b` has both.
        std::fs::create_dir_all(a.path().join("calibration/demo")).unwrap();
        std::fs::write(a.path().join("calibration/demo/projector.json"), "{}").unwrap();
        std::fs::create_dir_all(b.path().join("calibration/demo")).unwrap();
        for f in ["projector.json", "projector.mpk"] {
            std::fs::write(b.path().join("calibration/demo").join(f), "x").unwrap();
        }
        let roots = vec![a.path().to_owned(), b.path().to_owned()];
        let needs = ["projector.json", "projector.mpk"];
        let found = find(
            "the calibration",
            Path::new("calibration/demo"),
            &needs,
            &roots,
        );
        assert_eq!(found.unwrap(), b.path().join("calibration/demo"));

        let err = find(
            "the generator",
            Path::new("assets/gen"),
            &["g.json"],
            &roots,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("the generator not found"), "{err}");
        assert!(err.contains("g.json"), "{err}");
        for root in &roots {
            assert!(
                err.contains(&root.join("assets/gen").display().to_string()),
                "{err}"
            );
        }
    }
}
