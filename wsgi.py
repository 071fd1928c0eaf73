"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

import sys

from app import create_app
from app.config import ConfigError

# gunicorn's "application failed to load" status: the master stops instead of respawning workers that cannot boot.
CONFIG_ERROR_EXIT = 4

try:
    app = create_app()
except ConfigError as error:
    # One clear line instead of a traceback: the operator needs the setting's name, not our stack.
    print(f"keyfob: configuration error: {error}", file=sys.stderr)
    raise SystemExit(CONFIG_ERROR_EXIT) from None
