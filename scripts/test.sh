#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian bookworm machine (run as root) and runs every
# check CI runs: formatting, clippy, generated files, the Rust test suite, external validators.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

log "system packages"
install_system_packages
command -v kubectl >/dev/null || { echo "kubectl is missing: the sim's kubectl tests need the machine image's /usr/bin/kubectl" >&2; exit 1; }
log "python tools (.venv)"
install_python_tools
log "real control plane: kube-apiserver, kube-controller-manager, etcd (scripts/k8s-bins.sh, cached)"
command -v go >/dev/null || { echo "go is missing: scripts/k8s-bins.sh builds the control plane with the machine image's Go" >&2; exit 1; }
MULTINIC_K8S_BIN_DIR=$(./scripts/k8s-bins.sh | tail -n 1)
# The realcp_* tests run against these binaries and fail, rather than skip, without them.
export MULTINIC_K8S_BIN_DIR MULTINIC_REQUIRE_REAL_CP=1

log "Oracle MySQL 9.7 from Debian sid for the caching_sha2_password test (scripts/mysql-sid.sh, cached)"
MULTINIC_MYSQL_ROOT=$(./scripts/mysql-sid.sh | tail -n 1)
# agent_db_mysql fails, rather than skips, without it.
export MULTINIC_MYSQL_ROOT

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "generated CRD is current and valid"
cargo build --workspace --locked --quiet
./target/debug/multinic crd | diff -u deploy/crds/multinic.io_multinicnodeconfigs.yaml -
kubernetes-validate --strict --quiet deploy/crds/multinic.io_multinicnodeconfigs.yaml
./target/debug/multinic validate examples/*.yaml

log "Helm chart: lint, render, validate, RBAC and args checks"
./scripts/chart-check.sh

log "cargo test"
cargo test --workspace --locked --no-fail-fast -- --test-threads="${MULTINIC_TEST_THREADS:-2}"
