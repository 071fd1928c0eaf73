"""/favicon.ico: browsers ask for it on every site, whatever the page declares (JSON and error pages declare none).
Pages link the SVG icon (static/img/favicon.svg); this answers the habitual request instead of a logged 404."""

from __future__ import annotations

from flask import Flask, current_app, send_from_directory

ONE_WEEK = 7 * 24 * 3600


def init_favicon(app: Flask) -> None:
    def favicon():
        return send_from_directory(current_app.static_folder, "img/favicon.ico", max_age=ONE_WEEK)

    app.add_url_rule("/favicon.ico", endpoint="favicon", view_func=favicon)
