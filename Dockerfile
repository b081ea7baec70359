# The newsletter scheduler service: `docker build -t newsletter .`, then see
# the README ("Running it every day", "Docker"). The config and the store live on the /data volume.

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/*.whl)[postgres,celery]" \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data --no-create-home newsletter \
    && mkdir /data \
    && chown newsletter:newsletter /data
USER newsletter
WORKDIR /data
VOLUME ["/data"]
# SIGTERM (what `docker stop` sends) finishes the sends in flight, then exits 0;
# give it more than shutdown_timeout: `docker stop --time 75`.
STOPSIGNAL SIGTERM
CMD ["newsletter", "--config", "/data/config.toml", "run"]
