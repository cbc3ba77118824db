#!/usr/bin/env bash
# Checks charts/multinic on a fresh Debian bookworm machine (as root): helm lint --strict and
# rendering with Helm's own SDK for every case in charts/multinic/ci/, kubernetes-validate
# --strict on what it renders, the chart's guards against bad values, the CRD copy, and the Rust
# tests that hold the rendered objects against the programs (controller/agent flags, RBAC).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

log "python tools (.venv)"
install_python_tools

log "chart: lint, render, kubernetes-validate --strict, guards"
out="target/chart-check"
rm -rf "$out"
python3 scripts/chart_tool.py check "$out"

log "chart: rendered objects against the programs (cargo test chart_*)"
cargo test -p multinic --locked --test 'chart_*' -- --test-threads="${MULTINIC_TEST_THREADS:-2}"
