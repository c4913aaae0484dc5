FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# var/exports exists in the image so a named volume mounted there starts owned by portal.
RUN useradd --system --home /app portal && mkdir -p /app/var/exports && chown -R portal /app/var
USER portal
EXPOSE 8000
# Workers, threads, time-outs and the access log come from gunicorn.conf.py (WEB_CONCURRENCY
# overrides the worker count).
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "delist_portal.wsgi"]
