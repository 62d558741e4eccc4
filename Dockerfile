# syntax=docker/dockerfile:1.7
# Candor container image.
#
#   docker build -t candor:0.1.0 .                                   # embedded store
#   docker build --target runtime-fdb --build-arg FEATURES=fdb \
#     -t candor:0.1.0-fdb .                                          # + FoundationDB
#
# Runtime: Debian slim (glibc, which libfdb_c needs; coreutils for the chart's init
# steps), the binary at /usr/local/bin/candor, user 10001:10001, no shell use at run
# time. Works with a read-only root filesystem: state only under /var/lib/candor (a
# volume), keys only from mounted Secrets (/etc/candor/secret, copied by the chart to
# the memory volume /run/candor/keys), scratch in /tmp (mount an emptyDir there).
# The helm chart (helm/candor) and tests/k8s run exactly these paths.

ARG RUST_VERSION=1.90
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
ARG FEATURES=""
# The foundationdb crate generates its bindings with bindgen (libclang).
RUN if [ -n "$FEATURES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends libclang-dev clang \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY benches benches
COPY proto proto
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p candor ${FEATURES:+--features "$FEATURES"} \
    && install -m 0755 target/release/candor /candor

FROM debian:${DEBIAN}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 candor \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/candor \
         --shell /usr/sbin/nologin candor \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/candor \
    && install -d -o 10001 -g 10001 -m 0700 /run/candor /run/candor/keys \
    && install -d -m 0755 /etc/candor /etc/candor/secret
COPY --from=build /candor /usr/local/bin/candor
USER 10001:10001
WORKDIR /var/lib/candor
VOLUME ["/var/lib/candor"]
# 8700: public gRPC API (+ gRPC health); 8701: Raft transport and cluster admin.
EXPOSE 8700 8701
ENTRYPOINT ["/usr/local/bin/candor"]
CMD ["--help"]

# With FoundationDB: the 7.3 client library (libfdb_c), the version the cluster runs.
FROM runtime AS runtime-fdb
ARG FDB_VERSION=7.3.63
ARG TARGETARCH=amd64
USER root
ADD https://github.com/apple/foundationdb/releases/download/${FDB_VERSION}/foundationdb-clients_${FDB_VERSION}-1_${TARGETARCH}.deb /tmp/fdb-clients.deb
RUN dpkg -i /tmp/fdb-clients.deb && rm /tmp/fdb-clients.deb \
    && install -d -o 10001 -g 10001 -m 0700 /var/run/fdb
USER 10001:10001
