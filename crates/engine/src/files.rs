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

/// One operation of a file batch.
pub(crate) enum FileOp<'a> {
    /// Replace the file atomically with these contents and permission bits.
    Write {
        path: &'a Path,
        mode: u32,
        contents: &'a [u8],
    },
    /// Remove the file (already gone is fine).
    Remove { path: &'a Path },
}

impl FileOp<'_> {
    fn path(&self) -> &Path {
        match self {
            Self::Write { path, .. } | Self::Remove { path } => path,
        }
    }
}

/// Applies `ops` with the durability of one-by-one atomic writes but far fewer disk waits:
/// every new file goes to a temp file next to its target and all temp files are fsynced
/// concurrently (the journal commits them together); then each op takes effect in order
/// (rename into place, or unlink) after `before_each` allowed it; then every touched
/// directory is fsynced once. On failure returns the position of the op that failed; the ops
/// before it have taken effect, the rest have not (their temp files are removed).
pub(crate) fn apply_batch(
    root: &Path,
    ops: &[FileOp<'_>],
    mut before_each: impl FnMut() -> Result<(), EngineError>,
) -> Result<(), (usize, EngineError)> {
    let fulls: Vec<PathBuf> = ops.iter().map(|op| on_root(root, op.path())).collect();
    let temps: Vec<Option<PathBuf>> = ops
        .iter()
        .zip(&fulls)
        .map(|(op, full)| matches!(op, FileOp::Write { .. }).then(|| temp_of(full)))
        .collect();
    let cleanup = |from: usize| {
        for temp in temps[from..].iter().flatten() {
            let _ = fs::remove_file(temp);
        }
    };
    // Stage: write every temp file, then fsync them all at once.
    for (i, op) in ops.iter().enumerate() {
        if let (FileOp::Write { mode, contents, .. }, Some(temp)) = (op, &temps[i])
            && let Err(e) = stage(temp, *mode, contents)
        {
            cleanup(0);
            return Err((i, EngineError::io(&fulls[i], e)));
        }
    }
    let synced = std::thread::scope(|scope| {
        let handles: Vec<_> = temps
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
            .map(|(i, temp)| (i, scope.spawn(move || fs::File::open(temp)?.sync_all())))
            .collect();
        handles
            .into_iter()
            .map(|(i, h)| (i, h.join().unwrap_or_else(|_| Err(ErrorKind::Other.into()))))
            .find(|(_, r)| r.is_err())
    });
    if let Some((i, Err(e))) = synced {
        cleanup(0);
        return Err((i, EngineError::io(&fulls[i], e)));
    }
    // Commit, one op at a time.
    let mut dirs = BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        let result = before_each().and_then(|()| {
            let full = &fulls[i];
            match op {
                FileOp::Write { .. } => {
                    let temp = temps[i].as_ref().expect("writes have a temp file");
                    fs::rename(temp, full).map_err(|e| EngineError::io(full, e))
                }
                FileOp::Remove { .. } => match fs::remove_file(full) {
                    Err(e) if e.kind() != ErrorKind::NotFound => Err(EngineError::io(full, e)),
                    _ => Ok(()),
                },
            }
        });
        if let Some(dir) = fulls[i].parent() {
            dirs.insert(dir.to_path_buf());
        }
        if let Err(e) = result {
            cleanup(i);
            sync_dirs(&dirs);
            return Err((i, e));
        }
    }
    sync_dirs(&dirs);
    Ok(())
}

fn temp_of(full: &Path) -> PathBuf {
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A dot file next to the target: same filesystem (rename is atomic), and every network
    // manager ignores dot files while they sit there.
    full.with_file_name(format!(".{name}.multinic-tmp"))
}

fn stage(temp: &Path, mode: u32, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = temp.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(temp)?;
    file.write_all(contents)?;
    // The open mode is filtered by the umask; set the exact bits.
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// fsyncs each directory once, concurrently, so renames and unlinks are durable.
fn sync_dirs(dirs: &BTreeSet<PathBuf>) {
    std::thread::scope(|scope| {
        for dir in dirs {
            scope.spawn(move || fs::File::open(dir).and_then(|d| d.sync_all()));
        }
    });
}
