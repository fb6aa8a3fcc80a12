# syntax=docker/dockerfile:1
# One image for the api, the worker, the sandbox acquirer and the one-off commands:
#   docker run kassa api | worker | acquirer | migrate | seed | users create-admin EMAIL --password …
# Configuration comes only from KASSA_* environment variables (see .env.example).

# --- build: install Kassa and its dependencies into a virtualenv ---------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kassa
WORKDIR /src
COPY . .
# A plain install: no `dev` extra (embedded PostgreSQL, Temporal dev server) and no `test` extra,
# not editable; the cache mount keeps wheels between builds.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/kassa/bin/pip install .

# --- runtime: the virtualenv only, run as an unprivileged user -----------------------------
FROM python:3.11-slim

RUN groupadd --system --gid 10001 kassa \
 && useradd --system --uid 10001 --gid kassa --home-dir /var/lib/kassa --create-home \
        --shell /usr/sbin/nologin kassa

COPY --from=build /opt/kassa /opt/kassa

# KASSA_HOST is the address the servers bind: all interfaces in a container. Other services
# must be told where to reach them (KASSA_ACQUIRER_URL, KASSA_PUBLIC_URL), never derived from it.
# KASSA_DATA_DIR holds the sandbox acquirer's SQLite file; production keeps nothing else there.
ENV PATH="/opt/kassa/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    KASSA_ENV=production \
    KASSA_HOST=0.0.0.0 \
    KASSA_DATA_DIR=/var/lib/kassa

USER kassa
WORKDIR /var/lib/kassa
EXPOSE 8000 8100

ENTRYPOINT ["kassa"]
CMD ["api"]
