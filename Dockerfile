# syntax=docker/dockerfile:1
# The gateway's image: a release build of cams-flows (the simulated CAMS included, so that
# `serve --sandbox` works in it too) on Debian bookworm-slim, as the numeric uid 10001, on a
# read-only root filesystem. docs/deploying.md says how to build and run it.
#
#   docker build -t cams-flows .
#   docker run --rm --read-only -p 50051:50051 cams-flows serve --sandbox     (no credentials needed)
#   docker run --rm --read-only -p 50051:50051 \
#     -e ALIBABA_CLOUD_ACCESS_KEY_ID -e ALIBABA_CLOUD_ACCESS_KEY_SECRET \
#     -v "$PWD/cams-flows.toml:/etc/cams-flows/cams-flows.toml:ro" \
#     -e CAMS_FLOWS_CONFIG=/etc/cams-flows/cams-flows.toml cams-flows

# Build stage: a pinned Rust release (Cargo.toml's rust-version is the floor), on bookworm like the
# runtime stage, so that the binary finds the glibc it was linked against.
FROM rust:1.94.1-slim-bookworm AS build
WORKDIR /src

# 1. The dependencies, in a layer of their own, rebuilt only when the manifests, the lock file,
#    build.rs or the proto change. Every target the manifests declare gets a placeholder (Cargo
#    refuses a manifest whose bench files are missing, and loads the whole workspace, the load
#    generator's bench/Cargo.toml included), then the same command as in step 2 builds every
#    dependency of the gateway with the same profile and features, and runs build.rs on the real
#    proto. The load generator is never built here: its placeholder stays, its sources never come.
COPY Cargo.toml Cargo.lock build.rs ./
COPY bench/Cargo.toml ./bench/
COPY proto ./proto
RUN mkdir -p src benches bench/src \
    && touch src/lib.rs \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && echo 'fn main() {}' > benches/limits.rs \
    && echo 'fn main() {}' > benches/call_path.rs \
    && cargo build --release --locked -p cams-flows --bin cams-flows \
    && rm -rf src benches

# 2. The gateway itself. COPY keeps the files' own modification times, which are older than the
#    placeholders' build, so Cargo would take the placeholder crate as up to date: the touch makes
#    it rebuild the library and the binary (and nothing else).
COPY src ./src
COPY benches ./benches
RUN touch src/lib.rs src/main.rs \
    && cargo build --release --locked -p cams-flows --bin cams-flows \
    && install -D -m 0755 target/release/cams-flows /out/cams-flows

# Runtime stage: glibc and a shell (for the preStop pause of deploy/kubernetes) and no package
# manager run. The CA roots that TLS to CAMS is verified against come from the build stage's
# Debian ca-certificates, so this stage needs no apt-get.
FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="cams-flows" \
      org.opencontainers.image.description="gRPC gateway in front of Alibaba Cloud CAMS's GetFlow API" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/cams-flows /usr/local/bin/cams-flows
# A numeric uid and gid, so that Kubernetes' runAsNonRoot can verify them. The gateway writes no
# file (logs go to stdout), so the root filesystem can be read-only (`docker run --read-only`,
# readOnlyRootFilesystem).
USER 10001:10001
# gRPC, and the admin listener (plain HTTP, Prometheus /metrics) on 9464, the port OpenTelemetry's
# Prometheus exporters use: the binary leaves it off by default, the image turns it on.
EXPOSE 50051 9464
# Every flag can also be set as CAMS_FLOWS_<KEY> (docs/configuration.md);
# CAMS_FLOWS_ADMIN_LISTEN=off turns the admin listener off.
ENV CAMS_FLOWS_LISTEN=0.0.0.0:50051 \
    CAMS_FLOWS_ADMIN_LISTEN=0.0.0.0:9464 \
    CAMS_FLOWS_LOG_FORMAT=json
# No HEALTHCHECK. Kubernetes ignores Docker's and probes grpc.health.v1 itself
# (deploy/kubernetes/deployment.yaml). A HEALTHCHECK here would run a gRPC health client baked into
# the image: a second binary to ship and patch, which would ask the same question as the gRPC
# probes and tell nothing they don't. Under plain Docker, probe port 50051 from outside
# (`grpcurl -plaintext localhost:50051 grpc.health.v1.Health/Check`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cams-flows"]
CMD ["serve"]
