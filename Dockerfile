# botfleet: one process running the fleet. Tokens and keys come from the environment (see .env.example),
# never from the image. The tiny local model is not included: point it at an OpenAI-compatible endpoint.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BOTFLEET_METRICS_PORT=9464 \
    BOTFLEET_METRICS_HOST=0.0.0.0 \
    BOTFLEET_LOG_JSON=true

WORKDIR /app
# Dependencies first, so editing personas or config does not reinstall them.
COPY pyproject.toml README.md ./
COPY bots ./bots
COPY adapters ./adapters
RUN pip install . && useradd --system --uid 10001 --home-dir /app botfleet
COPY personas ./personas
COPY config.yaml ./
# The pid file (for `botfleet reload`) is written next to config.yaml.
RUN chown botfleet /app
USER botfleet

EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"BOTFLEET_METRICS_PORT\"]}/healthz', timeout=3)"
# SIGTERM: stop taking messages, finish replies for fleet.shutdown_seconds, exit 0.
STOPSIGNAL SIGTERM
CMD ["botfleet", "run"]
