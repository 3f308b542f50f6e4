# livecast: one self-contained node on the embedded default (no Redis needed).
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 livecast \
  && mkdir /data && chown livecast:livecast /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY livecast ./livecast
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER livecast
ENV LIVECAST_HOST=0.0.0.0 \
    LIVECAST_PORT=8080 \
    LIVECAST_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
# the rooms, rules and profiles (SQLite): mount a named volume here to keep them
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LIVECAST_PORT', '8080'), timeout=2)"]
CMD ["livecast", "serve"]
