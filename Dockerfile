FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
# .dockerignore keeps .env and secrets/ out: secrets reach the containers as compose secrets.
COPY . .
# var/exports exists in the image so a named volume mounted there starts owned by portal. A
# numeric user, so the host (and `docker compose exec --user`) can name it without a passwd entry.
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --home /app portal \
    && mkdir -p /app/var/exports \
    && chown -R portal:portal /app/var
USER 10001:10001
EXPOSE 8000
# Workers, threads, time-outs and the access log come from gunicorn.conf.py (WEB_CONCURRENCY
# overrides the worker count). docker-compose.yml runs the worker, beat and migrations from
# this image with commands of their own.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "delist_portal.wsgi"]
