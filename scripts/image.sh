#!/usr/bin/env bash
# Builds the shipped image without a Docker daemon or registry and writes it as an OCI archive:
#
#   scripts/image.sh [OUT_DIR]      # default: target/image
#
# The release build has its own target directory (MULTINIC_IMAGE_TARGET_DIR, default
# target/image/cargo): other flags than a debug build, and a test may call this script while
# `cargo test` holds the lock of the usual target directory.
#
# 1. the multinic binary, statically linked (glibc, +crt-static), not position-independent
#    (relocation-model=static: no start-up relocations, see docs/benchmarks.md "The binary")
#    and without the developer commands (--no-default-features: no simulator, `sim`, `demo`
#    or `bench`);
# 2. the Dockerfile's runtime stage (FROM scratch, the binary, USER 65532, ENTRYPOINT) built
#    with buildah from that binary, with every timestamp at 0 so the same sources give the
#    same image digest;
# 3. OUT_DIR/multinic-<version>.oci.tar, named docker.io/library/multinic:<version> (what the
#    chart's default `image.repository: multinic` resolves to). Load it with `podman load -i`
#    or `ctr -n k8s.io images import` (docs/install.md).
#
# Prints the archive's path on stdout. buildah keeps its state in a temporary folder that is
# removed afterwards; nothing is left in the host's container storage. Needs buildah (Debian
# package) and a Rust toolchain; run as root (vfs storage, no user namespace set-up).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir=${1:-target/image}
arch=$(uname -m)
target="$arch-unknown-linux-gnu"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
name="docker.io/library/multinic:$version"
target_dir=${MULTINIC_IMAGE_TARGET_DIR:-target/image/cargo}

echo "==> static release build for $target (no default features)" >&2
RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' \
CARGO_PROFILE_RELEASE_DEBUG=false \
CARGO_PROFILE_RELEASE_STRIP=symbols \
CARGO_TARGET_DIR="$target_dir" \
    cargo build --release --locked --target "$target" -p multinic --no-default-features >&2
bin="$target_dir/$target/release/multinic"
# A dynamic binary would start on this machine but not in a FROM-scratch image; a
# position-independent one would pay its relocations at every start.
if readelf -d "$bin" | grep -q '(NEEDED)'; then
    echo "image.sh: $bin is dynamically linked" >&2
    exit 1
fi
if ! readelf -h "$bin" | grep -q 'Type: *EXEC'; then
    echo "image.sh: $bin is position-independent (expected a static executable)" >&2
    exit 1
fi

work=$(mktemp -d)
cleanup() {
    # vfs layers are plain directories; unmount nothing, just remove the state.
    buildah "${storage[@]}" rm --all >/dev/null 2>&1 || true
    rm -rf "$work"
}
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
trap cleanup EXIT

# The build context: the binary, this machine's CA bundle (Debian's, as in the build stage)
# and the Dockerfile's runtime stage, taking both from the context instead of the build stage.
mkdir -p "$work/context"
install -m 0755 "$bin" "$work/context/multinic"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$work/context/ca-certificates.crt"
sed -n '/^FROM scratch$/,$p' Dockerfile \
    | sed -e 's#^COPY --from=build /out/multinic #COPY multinic #' \
        -e 's#^COPY --from=build /etc/ssl/certs/ca-certificates.crt #COPY ca-certificates.crt #' \
        >"$work/context/Containerfile"
if grep -q -- '--from=' "$work/context/Containerfile" \
    || ! grep -q '^COPY multinic /usr/local/bin/multinic$' "$work/context/Containerfile"; then
    echo "image.sh: the Dockerfile's runtime stage copies something image.sh does not provide" >&2
    exit 1
fi

echo "==> buildah build $name" >&2
# --timestamp 0: the created time and every file's mtime are the epoch (reproducible).
# No RUN steps, so no container runtime is needed; one stage gives one layer.
buildah "${storage[@]}" build --quiet --timestamp 0 --format oci \
    -f "$work/context/Containerfile" -t "$name" "$work/context" >&2

mkdir -p "$out_dir"
archive="$out_dir/multinic-$version.oci.tar"
rm -f "$archive"
buildah "${storage[@]}" push --quiet "$name" "oci-archive:$archive:$name" >&2
echo "$archive"
