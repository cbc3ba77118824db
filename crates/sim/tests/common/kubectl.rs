//! The machine's real kubectl, run against a kubeconfig: what the kubectl tests share.

use multinic_sim::SimHandle;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// What a kubectl run printed, and whether it succeeded.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// kubectl against the simulator, with a discovery cache of its own.
pub fn kubectl(sim: &SimHandle, args: &[&str]) -> Out {
    // A discovery cache per sim: ports get reused, and kubectl caches discovery per host:port.
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig_path)
        .arg("--cache-dir")
        .arg(sim.work_dir.join("kubectl-cache"))
        .args(args)
        .output()
        .expect(
            "running /usr/bin/kubectl (apt package kubectl, listed in scripts/apt-packages.txt)",
        );
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// kubectl blocks, so tests call it off the async runtime.
pub async fn kubectl_async(sim: &SimHandle, args: &[&str]) -> Out {
    let cache = sim.work_dir.join("kubectl-cache");
    kubectl_with(sim.kubeconfig_path.clone(), cache, args).await
}

/// kubectl with a given kubeconfig and discovery cache, off the async runtime.
pub async fn kubectl_with(path: PathBuf, cache: PathBuf, args: &[&str]) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(path)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .output()
            .expect("running /usr/bin/kubectl (apt package kubectl, listed in scripts/apt-packages.txt)");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
