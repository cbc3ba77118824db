//! Persistent files under the configured root: find multinic's own files, diff them against the
//! rendered ones, and write atomically (temp file, fsync, chmod, rename, fsync the directory).

use crate::error::EngineError;
use crate::plan::FileChange;
use multinic_netconf::{OsFlavor, OwnedFile, RenderedFile, owned_dirs, parse_owned};
use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DiskFile {
    /// Host path (not joined with the root).
    pub path: PathBuf,
    /// Raw contents.
    pub contents: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// `path` under `root`.
pub(crate) fn on_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Reads one host file, `None` when it does not exist.
pub(crate) fn read(root: &Path, path: &Path) -> Result<Option<DiskFile>, EngineError> {
    let full = on_root(root, path);
    let contents = match fs::read(&full) {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::io(full, e)),
    };
    let mode = fs::metadata(&full)
        .map_err(|e| EngineError::io(&full, e))?
        .permissions()
        .mode()
        & 0o7777;
    Ok(Some(DiskFile {
        path: path.to_path_buf(),
        contents,
        mode,
    }))
}

/// Every multinic-owned file in the flavor's directories, with its marker.
pub(crate) fn scan_owned(
    root: &Path,
    flavor: OsFlavor,
) -> Result<Vec<(PathBuf, OwnedFile)>, EngineError> {
    let mut out = Vec::new();
    for dir in owned_dirs(flavor) {
        let full = on_root(root, Path::new(dir));
        let entries = match fs::read_dir(&full) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(EngineError::io(full, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| EngineError::io(&full, e))?;
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Ok(text) = fs::read_to_string(entry.path()) else {
                continue;
            };
            if let Some(owner) = parse_owned(&text) {
                out.push((Path::new(dir).join(entry.file_name()), owner));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// File changes that turn the disk into `rendered`: write what differs, remove owned files
/// that are not rendered, except those of NICs in `keep_macs` (desired but not configured in
/// this run, whose files stay as they are).
pub(crate) fn diff(
    root: &Path,
    rendered: &[RenderedFile],
    owned: &[(PathBuf, OwnedFile)],
    keep_macs: &BTreeSet<String>,
) -> Result<Vec<FileChange>, EngineError> {
    let mut changes = Vec::new();
    for file in rendered {
        let current = read(root, &file.path)?;
        let same = current
            .as_ref()
            .is_some_and(|c| c.contents == file.contents.as_bytes() && c.mode == file.mode);
        if !same {
            changes.push(FileChange::Write {
                path: file.path.clone(),
                mode: file.mode,
                contents: file.contents.clone(),
                owner: parse_owned(&file.contents),
            });
        }
    }
    let rendered_paths: BTreeSet<&Path> = rendered.iter().map(|f| f.path.as_path()).collect();
    for (path, owner) in owned {
        if !rendered_paths.contains(path.as_path()) && !keep_macs.contains(&owner.mac) {
            changes.push(FileChange::Remove {
                path: path.clone(),
                owner: Some(owner.clone()),
            });
        }
    }
    Ok(changes)
}

/// Writes `contents` to `path` under `root` atomically with permission bits `mode`.
pub(crate) fn write_atomic(
    root: &Path,
    path: &Path,
    mode: u32,
    contents: &[u8],
) -> Result<(), EngineError> {
    let full = on_root(root, path);
    let dir = full.parent().unwrap_or(root).to_path_buf();
    fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A dot file next to the target: same filesystem (rename is atomic), and every network
    // manager ignores dot files while it sits there.
    let temp = dir.join(format!(".{name}.multinic-tmp"));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(contents)?;
        // The open mode is filtered by the umask; set the exact bits.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&temp, &full)?;
        fs::File::open(&dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        EngineError::io(&full, e)
    })
}

/// Removes `path` under `root`; a file already gone is fine.
pub(crate) fn remove(root: &Path, path: &Path) -> Result<(), EngineError> {
    let full = on_root(root, path);
    match fs::remove_file(&full) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(EngineError::io(full, e)),
    }
    if let Some(dir) = full.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
