"""What every template can use: the pinned CDN scripts and the htmx configuration."""

from flask import Flask

from app.assets import HTMX, HTMX_CONFIG


def init_templating(app: Flask) -> None:
    app.jinja_env.globals.update(htmx=HTMX, htmx_config=HTMX_CONFIG)
