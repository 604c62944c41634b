# One image for every role: api (serve), worker, migrate, sandbox.
# The image runs the installed wheel, not a source checkout: the migrations ship inside it.

# Stage 1: wheels of the locked dependencies and of the project.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every locked version, each file checked against its hash (a layer of its own: a code change
# does not download them again). The lock holds the development tools too; stage 2 installs
# only what the project needs.
COPY requirements.lock ./
RUN pip wheel --require-hashes --wheel-dir /wheels -r requirements.lock
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY schema schema
COPY resolvers resolvers
COPY persistence persistence
COPY providers providers
COPY workers workers
RUN pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: the wheel and its dependencies, from stage 1's wheels only, in a clean interpreter.
FROM python:3.11-slim

# REQUIRE_PRODUCTION: `serve` and `worker` refuse to start without DATABASE_URL and REDIS_URL
# (one line on stderr, exit code 2) instead of falling back to the embedded mode.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 REQUIRE_PRODUCTION=true

COPY --from=build /wheels /tmp/wheels
RUN pip install --no-index --find-links /tmp/wheels messaging-gateway && rm -rf /tmp/wheels \
    && useradd --system --create-home --home-dir /home/gateway gateway
USER gateway
WORKDIR /home/gateway

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)" || exit 1
CMD ["messaging-gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
