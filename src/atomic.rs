//! Whole-file writes that a reader never sees half done and a power cut never leaves empty:
//! write a hidden temporary beside the target, sync it, rename it over the target (atomic on one
//! filesystem), then sync the folder so the rename itself is durable. A failed write leaves no
//! temporary behind. This is not an append log (`sink::line_file` is).

use std::fs::File;
use std::io::Write;
use std::path::Path;

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let written = File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // Best effort: the temporary may not exist (create failed) or the folder may be gone.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_folder(parent.unwrap_or(Path::new(".")));
    Ok(())
}

/// Makes a rename or a new file in `dir` durable. Best effort: some filesystems (and Windows)
/// refuse to sync a folder, and the data itself is already synced.
pub fn sync_folder(dir: &Path) {
    if let Ok(folder) = File::open(dir) {
        let _ = folder.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_bytes_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/file.json");
        write_atomic(&path, b"{\"a\": 1}").expect("write");
        write_atomic(&path, b"{\"a\": 2}").expect("overwrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"a\": 2}");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.json")]);
    }

    #[test]
    fn a_failed_rename_removes_its_temporary_and_keeps_the_target() {
        // A non-empty folder where the file should go: the rename fails on every OS.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).expect("folder");
        std::fs::write(path.join("inside"), b"x").expect("inside");
        let err = write_atomic(&path, b"new").expect_err("rename over a folder must fail");
        assert!(!err.to_string().is_empty());
        assert!(
            !dir.path().join(".taken.tmp").exists(),
            "temporary left behind"
        );
        assert_eq!(std::fs::read(path.join("inside")).expect("kept"), b"x");
    }
}
