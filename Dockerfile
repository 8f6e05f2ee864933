# Wabridge server image. Build: docker build -t wabridge .   Run: see compose.yaml and docs/deployment.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what `pip install .` needs: the project metadata and the three packages. The source is removed after
# the install so that the installed package is the only copy Python can import.
COPY pyproject.toml README.md LICENSE /tmp/src/
COPY bot /tmp/src/bot
COPY scheduler /tmp/src/scheduler
COPY storage /tmp/src/storage
RUN cd /tmp/src && pip install . \
    && rm -rf /tmp/src

# The server never needs to write to its code; SQLite (one process only) goes to /app/data.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin wabridge \
    && mkdir -p /app/data \
    && chown wabridge:wabridge /app/data
COPY app.yaml /app/app.yaml
ENV DATABASE_URL=sqlite+aiosqlite:////app/data/wabridge.db

USER wabridge
EXPOSE 8080

# /healthz answers 200 while the database and Redis answer, 503 otherwise (urlopen raises on 503).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

CMD ["wabridge", "serve", "--config", "/app/app.yaml"]
