# One image for the three services; the command picks the service.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY campaign_common ./campaign_common
COPY scheduler_svc ./scheduler_svc
COPY scraper_svc ./scraper_svc
COPY gateway ./gateway
RUN pip install . && useradd --system --uid 10001 app
USER app
# Overridden per service in docker-compose.yml.
CMD ["python", "-m", "scheduler_svc"]
