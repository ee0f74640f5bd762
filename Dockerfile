# syntax=docker/dockerfile:1
#
# healthlake-exporter container image, for linux/amd64 and linux/arm64.
#
#   docker build -t healthlake-exporter .                         # from source, for this machine
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/healthlake-exporter:TAG .
#   docker run --rm -p 9469:9469 healthlake-exporter --demo --listen-address 0.0.0.0:9469
#   docker run --rm -p 9469:9469 \
#     -v "$PWD/config.toml:/etc/healthlake-exporter/config.toml:ro" healthlake-exporter
#
# The build never emulates the target: the builder runs on the build machine's own platform
# (BUILDPLATFORM) and cross-compiles for TARGETARCH with cargo-zigbuild, linking against glibc 2.28
# so that the same binary also runs on older distributions (the release binaries are built the same
# way). The release workflow builds those binaries first and packs them with the `prebuilt` stage:
#
#   docker buildx build --platform linux/amd64,linux/arm64 --target prebuilt ...   # needs dist/
#
# The runtime image is distroless: no shell, no package manager, glibc and CA certificates
# included (the AWS SDK's TLS reads the system roots); it runs as the unprivileged "nonroot" user.

ARG RUST_VERSION=1.95

# ---- build (on the build machine's platform, for the target's) ---------------------------------
FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
# zig (the cross linker) and cargo-zigbuild, pinned; both are wheels on PyPI.
ARG ZIGLANG_VERSION=0.17.0
ARG CARGO_ZIGBUILD_VERSION=0.24.0
# python3-pip only installs the two pinned wheels below; the bookworm image fixes its version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && pip3 install --no-cache-dir --break-system-packages \
       "ziglang==${ZIGLANG_VERSION}" "cargo-zigbuild==${CARGO_ZIGBUILD_VERSION}"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates/ crates/
ARG TARGETARCH
# The commit for healthlake_exporter_build_info{revision} (.git is not in the build context).
ARG REVISION=unknown
# Cache mounts keep the registry and target dir between builds (BuildKit); the binary is copied
# out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=target-${TARGETARCH} \
    case "${TARGETARCH}" in \
      amd64) triple=x86_64-unknown-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}: build for linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac \
    && rustup target add "${triple}" \
    && HEALTHLAKE_EXPORTER_REVISION="${REVISION}" \
       cargo zigbuild --release --locked -p healthlake-exporter --target "${triple}.2.28" \
    && install -D -m 0755 "target/${triple}/release/healthlake-exporter" /out/healthlake-exporter

# ---- runtime (shared by both final stages) -----------------------------------------------------
# cc-debian12: glibc 2.36, libgcc, CA certificates, tzdata.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

# The repository and revision the image was built from; the release workflow passes them from
# deploy/project.json and the tag's commit.
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/example/healthlake-exporter
ARG REVISION=unknown
LABEL org.opencontainers.image.title="healthlake-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Amazon HealthLake FHIR export and import jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

# Mount the config file here (Kubernetes: a ConfigMap at /etc/healthlake-exporter).
ENV HEALTHLAKE_EXPORTER_CONFIG=/etc/healthlake-exporter/config.toml
USER 65532:65532
EXPOSE 9469
# No HEALTHCHECK: there is no shell or HTTP client in the image; use the /healthz and /readyz
# endpoints from the orchestrator (Kubernetes probes) instead.
ENTRYPOINT ["/usr/local/bin/healthlake-exporter"]

# ---- the release binaries of dist/linux-<arch>/ (built by the release workflow) ---------------
FROM runtime AS prebuilt
ARG TARGETARCH
COPY dist/linux-${TARGETARCH}/healthlake-exporter /usr/local/bin/healthlake-exporter

# ---- default: built from source above ----------------------------------------------------------
FROM runtime
COPY --from=builder /out/healthlake-exporter /usr/local/bin/healthlake-exporter
