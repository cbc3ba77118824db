//! Reading the validation corpus (`testdata/valid`, `testdata/invalid`): its YAML files and
//! their `# key: value` headers. Shared by this crate's corpus test and the real control-plane
//! CRD test (crates/multinic/tests/realcp_crd.rs includes this file by path).

use std::path::{Path, PathBuf};

/// The `.yaml` files of `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The value of the `# key: value` header of a corpus file; panics when it is missing.
pub fn header(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .unwrap_or_else(|| panic!("missing `# {key}:` header"))
        .trim()
        .to_owned()
}
