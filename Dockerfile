# sluice as a self-contained image: DuckDB compiled in (the `bundled` feature), the signed
# DuckDB extensions it loads installed at build time from their PyPI wheels.
#   docker build -t sluice .
# The build compiles DuckDB from source: ~36 min on 2 cores, once per builder cache.

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential pkg-config libssl-dev zlib1g-dev libzstd-dev python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features bundled --bin sluice -p sluice \
    && cargo build --release --locked --bin sluice-loadgen -p sluice-producer

# DuckDB 1.5.5's extensions from the PyPI wheels duckdb-extension-<name>==1.5.5.
RUN set -eux; dest=/opt/sluice/extensions/v1.5.5/linux_amd64; mkdir -p "$dest" /tmp/wheels; \
    for e in ducklake httpfs postgres_scanner quack; do \
      pip3 download -q --no-deps -d /tmp/wheels "duckdb-extension-$(echo $e | tr _ -)==1.5.5"; \
    done; \
    for w in /tmp/wheels/*.whl; do \
      python3 -c 'import sys, zipfile, os; z = zipfile.ZipFile(sys.argv[1]); [open(os.path.join(sys.argv[2], os.path.basename(m)), "wb").write(z.read(m)) for m in z.namelist() if m.endswith(".duckdb_extension")]' "$w" "$dest"; \
    done; \
    ls -l "$dest"

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 libstdc++6 libzstd1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/sluice sluice
COPY --from=build /src/target/release/sluice /src/target/release/sluice-loadgen /usr/local/bin/
COPY --from=build /opt/sluice/extensions /opt/sluice/extensions
COPY sluice.example.toml /etc/sluice/sluice.example.toml
ENV SLUICE_LAKE__EXTENSION_DIRECTORY=/opt/sluice/extensions
USER sluice
WORKDIR /var/lib/sluice
# 8815: live Arrow Flight; 9464: /metrics, /healthz, /readyz.
EXPOSE 8815 9464
ENTRYPOINT ["sluice"]
CMD ["run", "--config", "/etc/sluice/sluice.toml"]
