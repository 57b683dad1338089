"""WSGI entry point for gunicorn: `gunicorn app.wsgi:app`. Starts no scheduler and no worker."""

from app import create_app

app = create_app()
