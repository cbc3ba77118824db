//! Golden files: every case under `testdata/netconf/` rendered for every flavor must equal the
//! committed `<case>/<flavor>/` tree byte for byte, with the modes listed in its `files.txt`.
//! `UPDATE_GOLDEN=1 cargo test -p multinic-netconf --test golden` rewrites the trees.

mod common;

use multinic_netconf::{OsFlavor, RenderedFile, owned_dirs, parse_owned, render};
use std::collections::BTreeMap;
use std::path::Path;

/// Name of the manifest (`<mode> <path>` per line) inside each flavor folder.
const MANIFEST: &str = "files.txt";

/// What a flavor folder must contain for `files`: relative path -> bytes, manifest included.
fn expected_tree(files: &[RenderedFile]) -> BTreeMap<String, String> {
    let mut tree = BTreeMap::new();
    let mut manifest = String::new();
    for file in files {
        manifest.push_str(&format!("{:04o} {}\n", file.mode, file.path.display()));
        let rel = file.path.strip_prefix("/").unwrap().display().to_string();
        tree.insert(rel, file.contents.clone());
    }
    tree.insert(MANIFEST.to_string(), manifest);
    tree
}

fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every difference between what is on disk and what was rendered; empty when equal.
fn compare(dir: &Path, want: &BTreeMap<String, String>) -> Vec<String> {
    let have = read_tree(dir);
    let mut problems = Vec::new();
    for (rel, contents) in want {
        match have.get(rel) {
            None => problems.push(format!("{}/{rel}: missing", dir.display())),
            Some(on_disk) if on_disk != contents => problems.push(format!(
                "{}/{rel}: differs\n--- committed\n{on_disk}--- rendered\n{contents}",
                dir.display()
            )),
            Some(_) => {}
        }
    }
    for rel in have.keys().filter(|rel| !want.contains_key(*rel)) {
        problems.push(format!("{}/{rel}: not rendered any more", dir.display()));
    }
    problems
}

fn write_tree(dir: &Path, tree: &BTreeMap<String, String>) {
    let _ = std::fs::remove_dir_all(dir);
    for (rel, contents) in tree {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

#[test]
fn every_case_matches_its_golden_files_for_every_flavor() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut problems = Vec::new();
    let mut checked = 0;
    for case in common::cases() {
        for flavor in OsFlavor::ALL {
            let files = render(flavor, &case.node);
            assert!(
                !files.is_empty(),
                "{}/{flavor}: nothing rendered",
                case.name
            );
            assert_eq!(
                files,
                render(flavor, &case.node),
                "rendering is not deterministic"
            );
            for file in &files {
                // The agent finds orphans by scanning owned_dirs for files with the marker,
                // and must be able to write every file: both lists must cover every path.
                let dir = file.path.parent().unwrap().to_str().unwrap();
                assert!(owned_dirs(flavor).contains(&dir), "{dir} not in owned_dirs");
                assert!(
                    flavor.host_paths().contains(&dir),
                    "{dir} not in host_paths"
                );
                assert!(
                    parse_owned(&file.contents).is_some(),
                    "{}",
                    file.path.display()
                );
            }
            let want = expected_tree(&files);
            let dir = case.dir.join(flavor.as_str());
            if update {
                write_tree(&dir, &want);
            }
            problems.extend(compare(&dir, &want));
            checked += 1;
        }
    }
    assert!(
        checked >= 6 * OsFlavor::ALL.len(),
        "only {checked} case/flavor pairs"
    );
    assert!(
        problems.is_empty(),
        "{} golden mismatch(es); rerun with UPDATE_GOLDEN=1 if the change is intended:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn comparison_fails_on_any_difference() {
    let case = &common::cases()[0];
    let want = expected_tree(&render(OsFlavor::Rhel9, &case.node));
    let tmp = common::TempDir::new("golden-compare");
    write_tree(&tmp.0, &want);
    assert!(compare(&tmp.0, &want).is_empty());

    // One changed byte.
    let (rel, contents) = want.iter().find(|(rel, _)| rel.ends_with(".link")).unwrap();
    std::fs::write(tmp.0.join(rel), contents.replacen("Name=", "Name =", 1)).unwrap();
    assert_eq!(compare(&tmp.0, &want).len(), 1);
    std::fs::write(tmp.0.join(rel), contents).unwrap();

    // A changed mode shows up in the manifest.
    let manifest = want[MANIFEST].replacen("0600", "0644", 1);
    std::fs::write(tmp.0.join(MANIFEST), manifest).unwrap();
    assert_eq!(compare(&tmp.0, &want).len(), 1);
    std::fs::write(tmp.0.join(MANIFEST), &want[MANIFEST]).unwrap();

    // A file that is no longer rendered, and a file that is missing.
    std::fs::write(tmp.0.join("etc/extra.conf"), "x\n").unwrap();
    std::fs::remove_file(tmp.0.join(rel)).unwrap();
    let problems = compare(&tmp.0, &want);
    assert_eq!(problems.len(), 2, "{problems:?}");
}
