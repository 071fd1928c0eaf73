"""The lookup cache's rules, without a database: the host's generation shared between processes, and an entry used
only while it is fresh by generation, by age and by room."""

from __future__ import annotations

import multiprocessing

import pytest

from app.keys import lookup_cache
from app.keys.lookup_cache import Generation, LookupCache


@pytest.fixture
def generation(tmp_path):
    counter = Generation(tmp_path / lookup_cache.GENERATION_FILE)
    yield counter
    counter.close()


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(lookup_cache.time, "monotonic", lambda: now[0])
    return now


def _bump_many(path, times: int) -> None:
    counter = Generation(path)
    for _ in range(times):
        counter.bump()
    counter.close()


def test_a_generation_starts_at_zero_and_every_mapping_of_the_file_sees_a_bump(tmp_path, generation):
    other = Generation(generation.path)  # another process of the host opens the same file
    assert generation.read() == other.read() == 0
    other.bump()
    assert generation.read() == 1
    other.close()
    assert Generation(generation.path).read() == 1  # kept in the file, not in a process


def test_bumps_from_several_processes_at_once_are_all_counted(generation):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_bump_many, args=(generation.path, 500)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert generation.read() == 2000


def test_a_forked_process_shares_the_parents_generation(generation):
    context = multiprocessing.get_context("fork")
    child = context.Process(target=generation.bump)  # as a gunicorn worker forked from a preloading master
    child.start()
    child.join(30)
    assert child.exitcode == 0 and generation.read() == 1


def test_a_kept_row_is_used_until_the_generation_moves(generation, clock):
    cache = LookupCache(generation, max_age=60, size=10)
    cache.put("digest", ("row",), cache.ticket())
    assert cache.get("digest") == ("row",)
    generation.bump()
    assert cache.get("digest") is None and len(cache) == 0


def test_a_row_read_while_a_change_committed_is_never_kept(generation, clock):
    cache = LookupCache(generation, max_age=60, size=10)
    ticket = cache.ticket()
    generation.bump()  # a revoke commits between the ticket and the query's answer
    cache.put("digest", ("stale",), ticket)
    assert cache.get("digest") is None


def test_a_row_is_used_for_less_than_the_bounded_age_from_the_start_of_its_lookup(generation, clock):
    cache = LookupCache(generation, max_age=1.0, size=10)
    ticket = cache.ticket()
    clock[0] += 0.25  # the query took a while
    cache.put("digest", ("row",), ticket)
    clock[0] += 0.74
    assert cache.get("digest") == ("row",)
    clock[0] += 0.01  # one second after the lookup started
    assert cache.get("digest") is None


def test_the_oldest_entry_goes_first_when_the_cache_is_full(generation, clock):
    cache = LookupCache(generation, max_age=60, size=2)
    for name in ("a", "b", "c"):
        cache.put(name, (name,), cache.ticket())
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, ("b",), ("c",))
    cache.put("b", ("b2",), cache.ticket())  # kept again: now the newest
    cache.put("d", ("d",), cache.ticket())
    assert (cache.get("b"), cache.get("c"), cache.get("d")) == (("b2",), None, ("d",))


def test_not_found_is_never_kept(generation, clock):
    cache = LookupCache(generation, max_age=60, size=10)
    cache.put("made-up", None, cache.ticket())
    assert len(cache) == 0


def test_no_cache_at_age_zero(generation):
    assert not LookupCache(generation, max_age=0, size=10).enabled
    assert LookupCache(generation, max_age=0.5, size=10).enabled
