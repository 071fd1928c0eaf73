"""ProcessThread: one thread per process, however many callers race to start it, and a new one after fork."""

from __future__ import annotations

import threading

from app import process_thread
from app.process_thread import ProcessThread


def _counting_thread():
    started, release = [], threading.Event()

    def run(stop: threading.Event) -> None:
        started.append(stop)
        stop.wait(10)
        release.set()

    return ProcessThread("test-thread", run), started, release


def test_racing_callers_start_one_thread():
    thread, started, ended = _counting_thread()
    barrier = threading.Barrier(16)

    def call():
        barrier.wait()
        thread.ensure_started()

    callers = [threading.Thread(target=call) for _ in range(16)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    thread.stop()
    assert ended.wait(5)
    assert len(started) == 1


def test_a_forked_process_starts_its_own_with_a_fresh_stop_event(monkeypatch):
    thread, started, ended = _counting_thread()
    thread.ensure_started()
    thread.ensure_started()
    parent_pid = process_thread.os.getpid()
    # As in a forked child: another pid, and the parent's thread is not running here (it is, in this test: stop it).
    thread.stop()
    assert ended.wait(5)
    ended.clear()
    monkeypatch.setattr(process_thread.os, "getpid", lambda: parent_pid + 1)
    thread.ensure_started()
    assert len(started) == 2
    assert started[0].is_set() and not started[1].is_set()
    thread.stop()
    assert ended.wait(5)
