"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from app import create_app
from app.config import ConfigError, exit_for

try:
    app = create_app()
except ConfigError as error:
    exit_for(error)
