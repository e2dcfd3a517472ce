# One image for every cachecluster component: `cachecluster operator`, `csi`,
# `master`, `worker` and `mount` (FUSE). The operator and the Helm chart run it
# with the subcommand as arguments (ENTRYPOINT is the `cachecluster` CLI).
#
#   docker build -t ghcr.io/cachecluster/cachecluster:0.1.0 .
#
# tests/operator/test_dockerfile.py checks that this file installs what the
# components need and that every command the chart and the operator run exists.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: wheels for the package and its dependencies (pyfuse3 compiles
# against libfuse3, so the compiler stays in this stage)
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libfuse3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cachecluster ./cachecluster
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[fuse,operator]"

# ---- runtime: fuse3 (fusermount3, /etc/fuse.conf), libfuse3 for pyfuse3,
# mount (umount -l for stale mounts) and util-linux (mountpoint, the FUSE
# pod's readiness check)
FROM ${PYTHON_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends fuse3 libfuse3-3 mount util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "cachecluster[fuse,operator]" \
    && rm -rf /wheels \
    && cachecluster --help >/dev/null
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["cachecluster"]
CMD ["--help"]
