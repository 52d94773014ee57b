# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 relay \
    && mkdir /data \
    && chown relay /data

# The default database (a SQLite file) and captured videos live in the working directory:
# mount a volume here.
WORKDIR /data
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"]
# uvicorn with the relay's defaults (proxy headers from FORWARDED_ALLOW_IPS, as uvicorn's own);
# on SIGTERM it is gone within RELAY_SHUTDOWN_GRACE plus a second.
CMD ["video-webhook-relay", "serve", "--host", "0.0.0.0", "--port", "8000"]
