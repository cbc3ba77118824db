# syntax=docker/dockerfile:1
# The one multinic binary in a FROM-scratch image. The controller runs it as
# `multinic controller`, the agent Jobs and the legacy DaemonSet as `multinic agent`.
#
#   docker build -t multinic:0.1.0 .
#
# Without a Docker daemon or registry, scripts/image.sh builds the same image (the runtime
# stage below, byte for byte) with buildah from a locally built binary and writes an OCI
# archive; docs/install.md says how to load it on nodes.
#
# Build stage: Rust on Debian bookworm; glibc linked statically (+crt-static), so the image
# needs no libc, and not position-independent (relocation-model=static), so the agent's
# every start skips ~42,000 relocations (docs/benchmarks.md "The binary"). Without default
# features: no simulator, `sim`, `demo` or `bench` ship.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# No debug info and no symbols in the shipped binary; the caches only speed up rebuilds.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
 && cargo build --release --locked --target "$target" -p multinic --no-default-features \
 && install -D -m 0755 "target/$target/release/multinic" /out/multinic \
 && /out/multinic --version

# Runtime stage (scripts/image.sh builds exactly this part): the binary and the CA bundle
# (kube's rustls client loads the system roots and refuses to start without any).
# Non-root by default (the controller); the agent's Pods ask for uid 0 and CAP_NET_ADMIN.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/multinic /usr/local/bin/multinic
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/multinic"]
CMD ["--help"]
