# syntax=docker/dockerfile:1
# The poller's container image: `docker build -t poller:0.1.0 .`
#
# Two stages. The builder has the compilers (and the Rust toolchain for the optional native
# extension in native/, built with maturin when that folder exists) and installs the poller
# and its dependencies into /opt/venv. The final stage is the slim Python image with only
# that virtualenv, the ODBC runtime pyodbc loads, and a non-root user: no compilers, no pip
# cache, no source tree. deploy/kubernetes/ and docker-compose.kafka.yml run this image.

ARG PYTHON_VERSION=3.12

# ------------------------------------------------------------------------------ builder
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder

# DL3008: Debian's package versions move with the mirror; the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential unixodbc-dev \
       libmariadb-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

# Rust for native/ (PyO3 + maturin), copied from the official image rather than curl | sh.
COPY --from=rust:1-slim-bookworm /usr/local/cargo /usr/local/cargo
COPY --from=rust:1-slim-bookworm /usr/local/rustup /usr/local/rustup
ENV CARGO_HOME=/usr/local/cargo \
    RUSTUP_HOME=/usr/local/rustup \
    PATH=/usr/local/cargo/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The whole context (.dockerignore keeps tests, docs and caches out): COPY cannot name a
# folder that may not exist, and native/ is optional.
COPY . .
# hadolint ignore=DL3013
RUN pip install --upgrade pip setuptools wheel \
    && pip install ".[mysql]" \
    && if [ -f native/Cargo.toml ]; then \
         pip install "maturin>=1.5,<2" \
         && maturin build --release --manifest-path native/Cargo.toml --out /tmp/native \
         && pip install /tmp/native/*.whl \
         && pip uninstall -y maturin; \
       fi \
    && python -c "import poller.cli.main"

# -------------------------------------------------------------------------------- final
FROM python:${PYTHON_VERSION}-slim-bookworm

LABEL org.opencontainers.image.title="poller" \
      org.opencontainers.image.description="Copies retail/loyalty rows from SQL databases into Kafka as Avro, exactly once" \
      org.opencontainers.image.source="https://github.com/example/poller"

# unixodbc: pyodbc's runtime; tdsodbc: the FreeTDS driver for SQL Server; libmariadb3:
# mysqlclient's (the MySQL/MariaDB driver for mysql:// URLs, docs/mysql-driver.md).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends unixodbc tdsodbc libmariadb3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 poller \
    && useradd --system --uid 10001 --gid poller --home-dir /home/poller --create-home \
       --shell /usr/sbin/nologin poller

COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/poller
EXPOSE 9400
# The poller is PID 1 (no shell): it receives SIGTERM itself and finishes its batch.
ENTRYPOINT ["poller"]
CMD ["--help"]
