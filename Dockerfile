# syntax=docker/dockerfile:1
# The application image: one image for the web process (default command: gunicorn), the
# Procrastinate worker and the one-shot migrate job (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    DEBUG=0 \
    PORT=8000

WORKDIR /app

# Dependencies first, from the lock file alone (the application's dependencies pinned with hashes;
# no dev tools, no embedded dev servers), so this layer is rebuilt only when they change.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# Then the project itself (installed from pyproject.toml; the code runs from /app).
COPY . .
RUN pip install --no-deps -e . \
    && DEBUG=1 python manage.py collectstatic --noinput -v 0 \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home app \
    && chown -R app:app /app/staticfiles

USER app

EXPOSE 8000

# The same web command `make run` uses (config.devstack.launcher.WEB_COMMAND; a test keeps them
# equal).
CMD ["gunicorn", "config.wsgi:application", "--config", "python:config.gunicorn"]
