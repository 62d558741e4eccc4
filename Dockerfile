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

# checkov:skip=CKV_DOCKER_2: Kubernetes probes (gRPC health on 8700, see helm/candor) replace HEALTHCHECK; the image carries no health client
ARG RUST_VERSION=1.90
ARG DEBIAN=bookworm
ARG FDB_VERSION=7.3.63

# The FoundationDB client package, fetched only for the fdb variants; checked against
# FDB_SHA256 (from the release page) when given.
FROM debian:${DEBIAN}-slim AS fdb-client
ARG FDB_VERSION
ARG FDB_SHA256=""
ARG TARGETARCH=amd64
ARG FEATURES=""
RUN mkdir /out && if [ -n "$FEATURES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
      && curl -fsSLo /out/fdb-clients.deb \
         "https://github.com/apple/foundationdb/releases/download/${FDB_VERSION}/foundationdb-clients_${FDB_VERSION}-1_${TARGETARCH}.deb" \
      && if [ -n "$FDB_SHA256" ]; then echo "$FDB_SHA256  /out/fdb-clients.deb" | sha256sum -c -; fi; \
    fi

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
ARG FEATURES=""
# With FEATURES=fdb: bindgen needs libclang, and linking needs libfdb_c.
COPY --from=fdb-client /out /tmp/fdb
RUN if [ -n "$FEATURES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends libclang-dev clang \
      && dpkg -i /tmp/fdb/fdb-clients.deb && rm -rf /var/lib/apt/lists/*; \
    fi && rm -rf /tmp/fdb
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
# Build it with --build-arg FEATURES=fdb (the fdb-client stage fetches the package).
FROM runtime AS runtime-fdb
USER root
COPY --from=fdb-client /out /tmp/fdb
RUN dpkg -i /tmp/fdb/fdb-clients.deb && rm -rf /tmp/fdb \
    && install -d -o 10001 -g 10001 -m 0700 /var/run/fdb
USER 10001:10001
