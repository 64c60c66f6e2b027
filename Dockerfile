# syntax=docker/dockerfile:1
# Build: docker build -t cams-flows .
# Run:   docker run -p 50051:50051 -e ALIBABA_CLOUD_ACCESS_KEY_ID=... -e ALIBABA_CLOUD_ACCESS_KEY_SECRET=... -e CAMS_FLOWS_CONFIG=/etc/cams-flows.toml -v $PWD/cams-flows.toml:/etc/cams-flows.toml cams-flows
#        docker run -p 50051:50051 cams-flows serve --sandbox      (no credentials needed)

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that code changes reuse the cached dependency layer.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
RUN mkdir -p src benches && echo "fn main() {}" > benches/limits.rs && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin cams-flows \
    && install -D target/release/cams-flows /out/cams-flows

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cams
COPY --from=build /out/cams-flows /usr/local/bin/cams-flows
USER 10001:10001
EXPOSE 50051
# Every flag can also be set as CAMS_FLOWS_<FLAG> (see `cams-flows serve --help`).
ENV CAMS_FLOWS_LISTEN=0.0.0.0:50051 \
    CAMS_FLOWS_LOG_FORMAT=json
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cams-flows"]
CMD ["serve"]
