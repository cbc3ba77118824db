# syntax=docker/dockerfile:1
# The one multinic binary in a small static image. The controller runs it as
# `multinic controller`, the agent Jobs and the legacy DaemonSet as `multinic agent`.
#
#   docker build -t multinic:0.1.0 .
#
# Build stage: Rust on Debian bookworm, linked statically against musl (no libc in the image).
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
# The musl target of the machine that builds (x86_64 or aarch64; buildx emulates others).
RUN rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# No debug info and no symbols in the shipped binary; the caches only speed up rebuilds.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
 && cargo build --release --locked --target "$target" -p multinic \
 && install -D -m 0755 "target/$target/release/multinic" /out/multinic \
 && /out/multinic --version

# Runtime: distroless static (CA certificates, /etc/passwd with nonroot, tzdata; no shell).
# Non-root by default (the controller); the agent's Pods ask for uid 0 and CAP_NET_ADMIN.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/multinic /usr/local/bin/multinic
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/multinic"]
CMD ["--help"]
