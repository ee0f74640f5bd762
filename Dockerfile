# syntax=docker/dockerfile:1
#
# healthlake-exporter container image.
#
#   docker build -t healthlake-exporter:0.1.0 .
#   docker run --rm -p 9469:9469 \
#     -v "$PWD/config.toml:/etc/healthlake-exporter/config.toml:ro" healthlake-exporter:0.1.0
#   docker run --rm -p 9469:9469 healthlake-exporter:0.1.0 --demo   # no AWS needed
#
# The runtime image is distroless: no shell, no package manager, CA certificates included (the
# AWS SDK's TLS reads the system roots), runs as the unprivileged "nonroot" user (65532).

ARG RUST_VERSION=1.95

# ---- build ------------------------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the cargo registry and target dir between builds (BuildKit); the binary is
# copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin healthlake-exporter \
    && install -D -m 0755 target/release/healthlake-exporter /out/healthlake-exporter

# ---- runtime ----------------------------------------------------------------------------------
# cc-debian12: glibc, libgcc, CA certificates, tzdata; matches the bookworm builder's glibc.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="healthlake-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Amazon HealthLake FHIR export jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/healthlake-exporter /usr/local/bin/healthlake-exporter

# Mount the config file here (Kubernetes: a ConfigMap at /etc/healthlake-exporter).
ENV HEALTHLAKE_EXPORTER_CONFIG=/etc/healthlake-exporter/config.toml

USER 65532:65532
EXPOSE 9469
# No HEALTHCHECK: there is no shell or HTTP client in the image; use the /healthz and /readyz
# endpoints from the orchestrator (Kubernetes probes) instead.
ENTRYPOINT ["/usr/local/bin/healthlake-exporter"]
