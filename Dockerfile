# teamrelay: one relay process, SQLite in the /app/data volume by default.
#   docker build -t teamrelay .
#   docker run -p 8000:8000 -v teamrelay-data:/app/data \
#     -e OPENAI_API_KEY -e RELAY_KEYS -e RELAY_PUBLIC_URL=https://relay.example teamrelay
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY src ./src
RUN pip install -c constraints.txt . \
    && rm -rf /app/src /app/build

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin teamrelay \
    && mkdir -p /app/data \
    && chown teamrelay:teamrelay /app/data

USER teamrelay

# The default RELAY_DATABASE_URL (sqlite+aiosqlite:///$RELAY_DATA_DIR/teamrelay.db) lands here.
ENV RELAY_DATA_DIR=/app/data
VOLUME ["/app/data"]
EXPOSE 8000

# No curl in the slim image: the standard library does the probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]

# `docker stop` sends SIGTERM, then SIGKILL after 10 s: give it --stop-timeout longer than
# the relay's drain time so streams in flight can finish.
STOPSIGNAL SIGTERM
CMD ["teamrelay", "serve", "--host", "0.0.0.0", "--port", "8000"]
