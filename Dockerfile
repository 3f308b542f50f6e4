# livecast: one self-contained node on the embedded default (no Redis needed).
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 livecast
WORKDIR /app
COPY pyproject.toml README.md ./
COPY livecast ./livecast
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER livecast
ENV LIVECAST_HOST=0.0.0.0 \
    LIVECAST_PORT=8080 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["livecast", "serve"]
