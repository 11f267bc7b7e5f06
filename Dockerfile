# One image for the three services; the command picks the service (docker-compose.yml).
# Build stage: the project's wheel, then exactly the pinned runtime dependencies
# (requirements.lock, kept in step with pyproject.toml by `make lock`) into /install.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY proto ./proto
COPY campaign_common ./campaign_common
COPY scheduler_svc ./scheduler_svc
COPY scraper_svc ./scraper_svc
COPY gateway ./gateway
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install --prefix /install --no-deps -r requirements.lock \
    && pip install --prefix /install --no-deps /wheels/*.whl

# Runtime stage: the interpreter, the installed packages, a non-root user; no build tools, no
# sources, no embedded Valkey (the `local` extra is not installed: Redis runs beside it).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home app
USER 10001
# Overridden per service in docker-compose.yml.
CMD ["python", "-m", "scheduler_svc"]
