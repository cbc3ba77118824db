//! Shared by the netconf integration tests: the fixture cases under `testdata/netconf/`, and a
//! temporary directory that removes itself.
#![allow(dead_code)] // each test binary uses a different part of this module

use multinic_api::{MultiNicNodeConfig, validate_spec};
use multinic_netconf::{DesiredNic, DesiredNode, NetOptions, RenderedFile};
use std::path::{Path, PathBuf};

/// One fixture folder: `input.yaml` (a MultiNicNodeConfig), optional `options.yaml`
/// (NetOptions, defaults otherwise) and one folder of expected files per flavor.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub node: DesiredNode,
}

pub fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/netconf")
}

/// Every case, sorted by name; panics on a malformed fixture.
pub fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(testdata_dir())
        .expect("testdata/netconf exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.join("input.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases under {:?}", testdata_dir());
    dirs.into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let node = load_node(&dir);
            Case { name, dir, node }
        })
        .collect()
}

fn load_node(dir: &Path) -> DesiredNode {
    let text = std::fs::read_to_string(dir.join("input.yaml")).unwrap();
    let resource: MultiNicNodeConfig =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{dir:?}/input.yaml: {e}"));
    let valid = validate_spec(&resource.spec).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
    let options: NetOptions = match std::fs::read_to_string(dir.join("options.yaml")) {
        Ok(text) => serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{dir:?}: {e}")),
        Err(_) => NetOptions::default(),
    };
    let (node, unplaced) = DesiredNode::build(&valid.interfaces, &options, &|_| None);
    assert!(unplaced.is_empty(), "{dir:?}: {unplaced:?}");
    node
}

/// A directory under the system temp dir, unique per process and label, removed on drop
/// (also when the test panics).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("multinic-netconf-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes rendered files under `root` (their absolute paths made relative to it).
pub fn write_under(root: &Path, files: &[RenderedFile]) {
    for file in files {
        let path = root.join(file.path.strip_prefix("/").unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &file.contents).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode)).unwrap();
    }
}

/// Runs a real tool; a missing tool is a test failure (CI installs it), never a skip.
pub fn run_tool(program: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (install the packages in scripts/apt-packages.txt)")
        });
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A network namespace holding one veth per NIC, named like the NIC; removed on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(label: &str, nics: &[DesiredNic]) -> Self {
        let name = format!("mn-netconf-{}-{label}", std::process::id());
        let ns = Netns(name.clone());
        ip(&["netns", "add", &name]).expect("ip netns add");
        for nic in nics {
            let peer = format!("peer{}", nic.slot);
            let link = ["-n", &name, "link", "add", &nic.name, "type", "veth"];
            ip(&[&link[..], &["peer", "name", &peer]].concat()).expect("veth");
            ip(&["-n", &name, "link", "set", &nic.name, "up"]).expect("up");
            ip(&["-n", &name, "link", "set", &peer, "up"]).expect("peer up");
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = run_tool("ip", args, None);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
