//! Shared by the `realcp_*` tests: a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager built by `scripts/k8s-bins.sh`) started by
//! `scripts/control-plane.sh up` in a temporary directory and stopped by `down` when the
//! [`RealControlPlane`] is dropped, also when the test panics.
//!
//! Use from a test file with `mod realcp_support;`:
//!
//! ```ignore
//! let Some(cp) = realcp_support::RealControlPlane::start().await else { return };
//! let admin: kube::Client = cp.client().await;
//! let token = cp.service_account_token("multinic-system", "multinic-controller").await;
//! let controller_kubeconfig = cp.write_kubeconfig("controller", &token);
//! ```
//!
//! Environment: `MULTINIC_K8S_BIN_DIR` names the binaries' dir (`scripts/test.sh` sets it from
//! `scripts/k8s-bins.sh`). Without it the test is skipped with a message, unless
//! `MULTINIC_REQUIRE_REAL_CP=1` (set by `scripts/test.sh`), which makes the skip a failure.

#![allow(dead_code)] // each test file uses its own part of this module

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The committed CRD, as `install_crd` applies it.
pub const CRD_FILE: &str = "deploy/crds/multinic.io_multinicnodeconfigs.yaml";
/// Its name.
pub const CRD_NAME: &str = "multinicnodeconfigs.multinic.io";

/// The env var naming the dir holding kube-apiserver, kube-controller-manager and etcd.
pub const BIN_DIR_VAR: &str = "MULTINIC_K8S_BIN_DIR";
/// The env var that turns a missing control plane into a test failure instead of a skip.
pub const REQUIRE_VAR: &str = "MULTINIC_REQUIRE_REAL_CP";

/// The repository root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running control plane on 127.0.0.1; dropping it runs `scripts/control-plane.sh down`.
pub struct RealControlPlane {
    dir: PathBuf,
    bin_dir: PathBuf,
    api_url: String,
}

impl RealControlPlane {
    /// Starts a control plane in a fresh temporary directory and waits until it is ready
    /// (apiserver `/readyz`, controller-manager healthy and acting). Returns `None`, after
    /// printing why, when the binaries are not configured and not required.
    pub async fn start() -> Option<Self> {
        let Some(bin_dir) = std::env::var_os(BIN_DIR_VAR).map(PathBuf::from) else {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!(
                    "{REQUIRE_VAR}=1 but {BIN_DIR_VAR} is not set: build the control plane with \
                     scripts/k8s-bins.sh and export {BIN_DIR_VAR}=<the dir it prints>"
                );
            }
            eprintln!(
                "SKIPPED: no real control plane ({BIN_DIR_VAR} is unset; scripts/k8s-bins.sh \
                 builds one, docs/testing.md explains)"
            );
            return None;
        };
        let dir = fresh_dir();
        let script = workspace().join("scripts/control-plane.sh");
        let run_dir = dir.clone();
        let run_bin = bin_dir.clone();
        // The script blocks for several seconds; keep it off the runtime's worker threads.
        let output = tokio::task::spawn_blocking(move || {
            Command::new(&script)
                .arg("up")
                .arg(&run_dir)
                .arg("--owner")
                .arg(std::process::id().to_string())
                .env(BIN_DIR_VAR, &run_bin)
                .output()
        })
        .await
        .expect("control-plane.sh up task")
        .expect("running scripts/control-plane.sh");
        // From here on, Drop stops whatever was started, even if `up` half failed.
        let mut cp = RealControlPlane {
            dir,
            bin_dir,
            api_url: String::new(),
        };
        assert!(
            output.status.success(),
            "scripts/control-plane.sh up {} failed:\n{}",
            cp.dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        cp.api_url = cp.env_value("APISERVER_URL");
        Some(cp)
    }

    /// The directory holding the kubeconfigs, certificates, logs and audit log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `https://127.0.0.1:<port>` of the kube-apiserver.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The admin kubeconfig (group `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The CA certificate the apiserver's serving certificate is signed by.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The apiserver's audit log (JSON lines, level Metadata for every request).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The audit log's events so far, parsed.
    pub fn audit_events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.audit_log()).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("audit log line is JSON"))
            .collect()
    }

    /// A client with admin rights.
    pub async fn client(&self) -> kube::Client {
        client_from_kubeconfig(&self.kubeconfig()).await
    }

    /// A bound token for ServiceAccount `namespace/name` (TokenRequest, valid for an hour).
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client().await, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let granted = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
        granted.status.expect("TokenRequest status").token
    }

    /// Writes `<dir>/<name>.kubeconfig` for a bearer token and returns its path.
    pub fn write_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "realcp", "cluster": {
                "server": self.api_url,
                "certificate-authority": self.ca_cert(),
            }}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "realcp", "user": name}}],
            "current-context": name,
        });
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&config).expect("kubeconfig json"),
        )
        .expect("writing kubeconfig");
        path
    }

    /// A client acting as ServiceAccount `namespace/name` (not admin).
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        let token = self.service_account_token(namespace, name).await;
        let path = self.write_kubeconfig(&format!("sa-{namespace}-{name}"), &token);
        client_from_kubeconfig(&path).await
    }

    /// The real kubectl (`/usr/bin/kubectl` or PATH's) with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let program = if Path::new("/usr/bin/kubectl").exists() {
            "/usr/bin/kubectl"
        } else {
            "kubectl"
        };
        let mut cmd = Command::new(program);
        // Its own discovery cache: a later control plane on a reused port must not see this
        // one's resource types (or lack of them).
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.join("kubectl-cache"));
        cmd
    }

    /// Runs kubectl with `args`, asserts it succeeded and returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl().args(args).output().expect("running kubectl");
        assert_success(&format!("kubectl {}", args.join(" ")), &output);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Applies the committed CRD with the real kubectl and waits (60 s at most) until the
    /// apiserver reports it Established.
    pub async fn install_crd(&self) {
        let crd_path = workspace().join(CRD_FILE);
        self.kubectl_ok(&["apply", "-f", crd_path.to_str().expect("utf-8 path")]);
        let crds: Api<CustomResourceDefinition> = Api::all(self.client().await);
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds, CRD_NAME, conditions::is_crd_established()),
        )
        .await
        .expect("CRD not Established within 60 s")
        .expect("watching the CRD");
    }

    /// Applies `objects` (JSON manifests) with the real kubectl, as one `List` written to
    /// `<dir>/<name>.json`; `namespace` is the default for objects that name none.
    pub fn apply_objects(&self, name: &str, namespace: &str, objects: &[Value]) {
        let path = self.dir.join(format!("{name}.json"));
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        std::fs::write(
            &path,
            serde_json::to_vec(&list).expect("manifest list json"),
        )
        .expect("writing the manifest list");
        self.kubectl_ok(&[
            "apply",
            "-n",
            namespace,
            "-f",
            path.to_str().expect("utf-8 path"),
        ]);
    }

    /// The tail of a component's log (`etcd`, `kube-apiserver`, `kube-controller-manager`), for
    /// failure messages.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("logs/{component}.log")))
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn env_value(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("cp.env")).expect("reading cp.env");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("cp.env has no {key}"))
            .to_string()
    }
}

impl Drop for RealControlPlane {
    fn drop(&mut self) {
        let result = Command::new(workspace().join("scripts/control-plane.sh"))
            .arg("down")
            .arg(&self.dir)
            .env(BIN_DIR_VAR, &self.bin_dir)
            .output();
        match result {
            Ok(out) if out.status.success() => {
                // Keep the logs of a failed test for reading; remove the rest.
                if !std::thread::panicking() {
                    let _ = std::fs::remove_dir_all(&self.dir);
                } else {
                    eprintln!("control plane logs kept in {}", self.dir.display());
                }
            }
            Ok(out) => eprintln!(
                "control-plane.sh down {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("running control-plane.sh down: {e}"),
        }
    }
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> kube::Client {
    let kubeconfig =
        Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    kube::Client::try_from(config).expect("kube client")
}

/// Panics with the command's stderr when it failed.
pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new, empty directory under the system temp dir, unique per process and call.
fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("multinic-realcp-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the control plane dir");
    dir
}
