#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine (run as root) and runs the multinic demo.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

log "system packages"
install_system_packages
log "building multinic"
cargo build --release --locked -p multinic --quiet
log "multinic validate examples/*.yaml"
./target/release/multinic validate examples/*.yaml
log "multinic demo"
exec ./target/release/multinic demo "$@"
