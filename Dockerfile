# syntax=docker/dockerfile:1
# pltf itself (deploy/helm/pltf runs it; docs/deploy.md says when to run more
# than one). The base image is pinned to a patch release; let Renovate
# (pinDigests) pin and bump its digest.

FROM python:3.12.12-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/pltf
ENV PATH=/opt/pltf/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY actions_server ./actions_server
# Editable, at the path it runs from: the server finds its templates and
# catalog files next to the package (PROJECT_ROOT in actions_server/config.py).
# Bytecode at build: with PYTHONDONTWRITEBYTECODE every replica and render
# worker would compile all its imports at each start (2.5 s of CPU against 1 s).
RUN pip install --no-cache-dir --require-virtualenv -e . \
    && python -m compileall -q /opt/pltf/lib /app/actions_server
COPY cookiecutters ./cookiecutters
COPY catalog-info ./catalog-info
COPY backstage-templates ./backstage-templates

FROM python:3.12.12-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="pltf" \
      org.opencontainers.image.description="PlatformOps toolkit: the action server behind Backstage's Create button"
# git: the embedded forge and every commit; bubblewrap: the sandbox of hooks and previews.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git=1:2.39.5-0+deb12u3 bubblewrap=0.8.0-2+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 pltf \
    && useradd --system --no-log-init --uid 10001 --gid pltf --home-dir /var/lib/pltf --shell /usr/sbin/nologin pltf \
    && mkdir -p /var/lib/pltf \
    && chown 10001:10001 /var/lib/pltf
COPY --from=build /opt/pltf /opt/pltf
COPY --from=build /app /app
ENV PATH=/opt/pltf/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PLTF_HOST=0.0.0.0 \
    PLTF_PORT=8787 \
    PLTF_DATA_DIR=/var/lib/pltf
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
EXPOSE 8787
VOLUME ["/var/lib/pltf"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=2)"]
CMD ["pltf", "serve"]
