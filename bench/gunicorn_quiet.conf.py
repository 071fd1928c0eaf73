"""The production gunicorn.conf.py for `make bench`, with the access log off and no control socket.

Everything else (bind, workers, graceful_timeout, the worker_exit hook that flushes usage counts) is the production
file's, loaded from it. Two settings change:

- `accesslog`: off, unless KEYFOB_BENCH_ACCESS_LOG=1 (`bench/run.py --access-log`). gunicorn's command line cannot
  set it back to None once a config file has set it (`--access-logfile ''` fails at start-up and `/dev/null` still
  formats a line per request), and a log line per request would be part of what is measured.
- `control_socket_disable`: recent gunicorns open a control socket at a fixed path in the home folder
  (~/.gunicorn/gunicorn.ctl); the bench must not take it over from a gunicorn serving on the same machine. Older
  gunicorns ignore the name.
"""

import os
import runpy
from pathlib import Path

_production = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update({name: value for name, value in _production.items() if not name.startswith("__")})

if os.environ.get("KEYFOB_BENCH_ACCESS_LOG") != "1":
    accesslog = None
control_socket_disable = True
