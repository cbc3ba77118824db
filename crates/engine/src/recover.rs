//! What a run killed part-way (SIGKILL, OOM, node crash) leaves, and how the next run finds
//! it. Before its first kernel write a run records every NIC it is about to touch in a
//! journal under `<root>/run/multinic/`; the journal goes once the run ends (applied, or
//! reverted). A journal found at the start of a run names NICs that may carry multinic's
//! addresses, rules and routes without the files or the `multinicN` name that would otherwise
//! prove it, so they count as multinic's: a spec that dropped them strips them. Temp files of
//! a file batch that never committed are removed too. `/run` is a tmpfs: after a reboot the
//! kernel state the journal speaks of is gone with it.

use crate::error::EngineError;
use crate::files::on_root;
use crate::plan::{NicAction, Plan};
use multinic_netconf::{OsFlavor, OwnedFile, owned_dirs};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The journal, relative to the root.
const JOURNAL: &str = "run/multinic/inflight";

/// Suffix of the temp files a file batch stages (see `files::temp_of`).
const TEMP_SUFFIX: &str = ".multinic-tmp";

fn path(root: &Path) -> PathBuf {
    root.join(JOURNAL)
}

/// The NICs an unfinished run was touching (name it was given, MAC); empty when none.
pub(crate) fn read(root: &Path) -> Result<Vec<OwnedFile>, EngineError> {
    let path = path(root);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EngineError::io(path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let (name, mac) = line.split_once(' ')?;
            Some(OwnedFile {
                name: name.to_owned(),
                mac: mac.trim().to_owned(),
            })
        })
        .collect())
}

/// Records the NICs `plan` touches (plus those of an earlier unfinished run) before the run
/// writes anything; written to a temp file and renamed, so it is whole or absent.
pub(crate) fn begin(root: &Path, earlier: &[OwnedFile], plan: &Plan) -> Result<(), EngineError> {
    let parked: Vec<u32> = plan.parking.iter().filter_map(|c| c.link_index()).collect();
    let mut entries: Vec<OwnedFile> = earlier.to_vec();
    for nic in &plan.nics {
        let touched = match nic.action {
            NicAction::Configure | NicAction::Remove => !nic.changes.is_empty(),
            NicAction::Skip { .. } => false,
        } || nic.index.is_some_and(|i| parked.contains(&i));
        let entry = OwnedFile {
            name: nic.name.clone(),
            mac: nic.mac.clone(),
        };
        if touched && !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    let path = path(root);
    let io = |e| EngineError::io(&path, e);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let text: String = entries
        .iter()
        .map(|e| format!("{} {}\n", e.name, e.mac))
        .collect();
    let temp = path.with_extension("tmp");
    fs::write(&temp, text).map_err(io)?;
    fs::rename(&temp, &path).map_err(io)
}

/// The run ended with the node in a known state: forget the journal.
pub(crate) fn finish(root: &Path) -> Result<(), EngineError> {
    let path = path(root);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(EngineError::io(path, e)),
        _ => Ok(()),
    }
}

/// Removes temp files a killed file batch left next to multinic's files.
pub(crate) fn sweep_temp_files(root: &Path, flavor: OsFlavor) -> Result<usize, EngineError> {
    let mut removed = 0;
    for dir in owned_dirs(flavor) {
        let full = on_root(root, Path::new(dir));
        let entries = match fs::read_dir(&full) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(EngineError::io(full, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))?;
                tracing::info!(path = %path.display(), "removed the temp file of an unfinished run");
                removed += 1;
            }
        }
    }
    Ok(removed)
}
