"""An entry point for `gunicorn --preload` in the tests: the master opens a database connection before it forks.

Every connection remembers the process that opened it, and /test/connection says, for a connection a worker takes
from its pool, who opened it: a worker that answers with the master's pid is using the master's connection.
"""

import os

from sqlalchemy import event, text

from app.extensions import db
from wsgi import app

with app.app_context():
    @event.listens_for(db.engine, "connect")
    def _remember_who_opened_it(_dbapi_connection, record) -> None:
        record.info["opened_by"] = os.getpid()

    with db.engine.connect() as connection:  # returned to the pool, still open, when gunicorn forks the workers
        connection.execute(text("SELECT 1"))
    MASTER = os.getpid()


@app.get("/test/connection")
def connection_owner():
    with db.engine.connect() as connection:
        return {"worker": os.getpid(), "master": MASTER, "opened_by": connection.connection.info["opened_by"]}
