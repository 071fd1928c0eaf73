"""The bare Flask app `make bench` measures Keyfob's /healthz against: Flask with one view and nothing else, served
by the same gunicorn settings (bench/gunicorn_quiet.conf.py) as Keyfob. `healthz / bare_healthz` is what Keyfob's
own request handling (its hooks, ProxyFix, the session, the headers every response carries) costs the cheapest
route."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    """The same answer as Keyfob's /healthz."""
    return jsonify(status="ok")
