# One image for every role: api (serve), worker, migrate, sandbox.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p gateway schema resolvers persistence providers workers \
    && touch gateway/__init__.py schema/__init__.py resolvers/__init__.py \
       persistence/__init__.py providers/__init__.py workers/__init__.py \
    && pip install -e .

COPY . .
RUN pip install -e . && useradd --system --home /app gateway && chown -R gateway /app
USER gateway

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)" || exit 1
CMD ["messaging-gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
