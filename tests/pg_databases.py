"""The PostgreSQL run's test databases: one per test folder, each a copy of a template the migrations built once.

`CREATE DATABASE ... TEMPLATE` copies a few megabytes of catalogues (tens of milliseconds, against a second for the
migrations), which over a thousand tests would still add minutes. So a background thread makes copies ahead of need
and drops finished ones while the tests run: a test takes a ready database and gives it back for dropping, and
neither waits on the server. Names carry the process id, so two test runs can share one server.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

READY = 3  # copies kept made ahead; each is ~8 MB
# FILE_COPY copies the template's files (and checkpoints, cheap with fsync off); the default WAL_LOG writes every
# block through the WAL, about twice the work for a database this small.
STRATEGY = "FILE_COPY"


class PostgresDatabases:
    def __init__(self, url: sa.URL, build_template: Callable[[str], None]) -> None:
        """`url`: a database on the server, to connect to for CREATE and DROP DATABASE (which its user must be
        allowed). `build_template(url)` migrates the empty database at url."""
        self.url = url
        self.prefix = f"keyfob_test_{os.getpid()}"
        self._build_template = build_template
        self._template: str | None = None
        self._by_folder: dict[str, str] = {}
        self._numbers = itertools.count(1)
        self._ready: queue.Queue[str] = queue.Queue()
        self._doomed: queue.Queue[str] = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._failure: BaseException | None = None
        # Every engine that connects, so that those a test never closed are closed before their database is dropped.
        self._engines: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
        sa.event.listen(sa.Engine, "engine_connect", lambda connection: self._engines.add(connection.engine))

    # -- the tests' side -------------------------------------------------------------------------------------------

    def url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def describe(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def for_folder(self, folder) -> str:
        """The URL of the folder's database: a fresh copy of the template on first use, the same one after."""
        key = str(folder)
        if key not in self._by_folder:
            self._by_folder[key] = self._take()
        return self.url_of(self._by_folder[key])

    def names(self) -> set[str]:
        return set(self._by_folder.values())

    def drop_inside(self, folder) -> None:
        """Drop the databases of this folder and of the folders under it."""
        folder = Path(folder)
        self.drop({name for path, name in self._by_folder.items() if Path(path).is_relative_to(folder)})

    def drop(self, names) -> None:
        """Drop these databases (in the background), closing first the pools of apps a test left open; DROP ...
        WITH (FORCE) ends any session still connected after that (a server a test did not stop, say)."""
        for engine in list(self._engines):
            if engine.url.database in names:
                engine.dispose()
        for folder, name in list(self._by_folder.items()):
            if name in names:
                del self._by_folder[folder]
                self._doomed.put(name)
        self._wake.set()

    def drop_all(self) -> None:
        """At the end: stop the background thread, drop every database this run made, template last."""
        if self._worker is not None:
            self._stop.set()
            self._wake.set()
            self._worker.join(timeout=60)
        leftovers = self.names() | _drain(self._doomed) | _drain(self._ready)
        self._by_folder.clear()
        with self._admin() as connection:
            for name in sorted(leftovers) + ([self._template] if self._template else []):
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._template = None

    def _take(self) -> str:
        if self._worker is None:
            self._start()
        self._wake.set()
        while True:
            try:
                name = self._ready.get(timeout=1)
            except queue.Empty:
                if self._worker is None or not self._worker.is_alive():
                    raise RuntimeError("the test database maker stopped") from self._failure
                continue
            self._wake.set()  # make the next one
            return name

    # -- the background thread -------------------------------------------------------------------------------------

    def _admin(self):
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        return engine.connect()

    def _start(self) -> None:
        template = f"{self.prefix}_template"
        with self._admin() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            connection.exec_driver_sql(f'CREATE DATABASE "{template}"')
        self._template = template
        self._build_template(self.url_of(template))
        self._worker = threading.Thread(target=self._keep, name="test-databases", daemon=True)
        self._worker.start()

    def _keep(self) -> None:
        """Drop what the tests are done with, keep READY fresh copies made, and sleep when there is nothing to do."""
        try:
            with self._admin() as connection:
                while not self._stop.is_set():
                    self._wake.clear()
                    try:
                        name = self._doomed.get_nowait()
                    except queue.Empty:
                        pass
                    else:
                        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        continue
                    if self._ready.qsize() < READY:
                        name = f"{self.prefix}_{next(self._numbers)}"
                        connection.exec_driver_sql(
                            f'CREATE DATABASE "{name}" TEMPLATE "{self._template}" STRATEGY {STRATEGY}')
                        self._ready.put(name)
                        continue
                    self._wake.wait(timeout=0.5)
        except BaseException as error:  # seen by _take(), which raises it in the test that waits
            self._failure = error


def _drain(names: queue.Queue[str]) -> set[str]:
    drained = set()
    while True:
        try:
            drained.add(names.get_nowait())
        except queue.Empty:
            return drained
