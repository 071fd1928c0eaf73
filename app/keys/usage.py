"""Usage recording without a database write per request.

Each process adds to an in-memory buffer (a lock and a few dict updates); a background thread writes it out every
USAGE_FLUSH_SECONDS with relative updates (`usage_count = usage_count + k`), so any number of processes add up
exactly. A flush that fails puts its counts back for the next try. The buffer is flushed at exit too (atexit, and
the gunicorn config's worker_exit). Failed verifications are audited through the same buffer, which keeps a flood
of bad keys from turning into a flood of synchronous writes.

The networks each key is used from (an IPv4 /24, an IPv6 /64) ride along, so that its owner hears of the first use
from a new one (owner_alerts.py): the hot path adds a network to a small per-key set, and the flush records the new
ones and queues the mails, after the counts and in a transaction of its own.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import limits
from sqlalchemy import String, case, delete, literal, select, update
from sqlalchemy.exc import SQLAlchemyError

from app.audit.alerts import raise_alerts
from app.audit.models import AuditEvent
from app.database import UTCDateTime, is_outage, upsert_insert, utcnow
from app.keys import owner_alerts
from app.keys.models import (
    RECENT_REQUESTS_KEPT,
    ApiKey,
    DailyKeyUsage,
    KeyRecentRequest,
    KeyVerifierUsage,
    Verifier,
)
from app.process_thread import ProcessThread

log = logging.getLogger(__name__)
MAX_PENDING_EVENTS = 10_000
# Networks buffered between two flushes: a few per key (a key seen from more within seconds has news enough in these),
# for a bounded number of keys. What does not fit is counted and seen again at the key's next use.
NETWORKS_PER_KEY = 4
MAX_NETWORK_KEYS = 5_000
# (key, network) pairs this process knows are recorded: a flush skips them instead of inserting them again.
MAX_KNOWN_NETWORKS = 100_000


@dataclass
class KeyUse:
    count: int = 0
    last_used_at: datetime | None = None
    last_ip: str | None = None


@dataclass
class Checks:
    """What one verifier asked: valid and refused checks, and when it last asked."""

    requests: int = 0
    failures: int = 0
    last_at: datetime | None = None

    def add(self, requests: int, failures: int, at: datetime | None) -> None:
        self.requests += requests
        self.failures += failures
        if at is not None and (self.last_at is None or at > self.last_at):
            self.last_at = at


@dataclass
class Pending:
    uses: dict[int, KeyUse] = field(default_factory=dict)
    daily: dict[tuple[int, date], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    events: list[dict] = field(default_factory=list)
    dropped_events: int = 0
    # Checks asked by services through a verifier credential: per (key, verifier), and per verifier in all.
    by_verifier: dict[tuple[int, int], Checks] = field(default_factory=lambda: defaultdict(Checks))
    verifiers: dict[int, Checks] = field(default_factory=lambda: defaultdict(Checks))
    # The method and path of the latest checks per key: only the newest RECENT_REQUESTS_KEPT can be kept anyway.
    recent: dict[int, deque] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=RECENT_REQUESTS_KEPT)))
    # The networks each key was used from, with the first use from each (owner_alerts.record_networks).
    networks: dict[int, dict[str, owner_alerts.Sighting]] = field(default_factory=dict)
    dropped_networks: int = 0

    def empty(self) -> bool:
        return not (self.uses or self.daily or self.events or self.verifiers or self.recent or self.networks)

    def note_network(self, key_id: int, network: str, sighting: owner_alerts.Sighting) -> None:
        """Keep the first sighting of the key from `network`, within NETWORKS_PER_KEY and MAX_NETWORK_KEYS."""
        seen = self.networks.get(key_id)
        if seen is None:
            if len(self.networks) >= MAX_NETWORK_KEYS:
                self.dropped_networks += 1
                return
            seen = self.networks[key_id] = {}
        if network in seen:
            if sighting.at < seen[network].at:
                seen[network] = sighting
        elif len(seen) < NETWORKS_PER_KEY:
            seen[network] = sighting
        else:
            self.dropped_networks += 1

    def add_networks(self, networks: dict[int, dict[str, owner_alerts.Sighting]]) -> None:
        """Take back networks a flush could not write (within the same bounds)."""
        for key_id, seen in networks.items():
            for network, sighting in seen.items():
                self.note_network(key_id, network, sighting)

    def count_check(self, key_id: int | None, verifier_id: int, at: datetime, *, valid: bool) -> None:
        self.verifiers[verifier_id].add(1, 0, at)
        if key_id is not None:
            self.by_verifier[(key_id, verifier_id)].add(int(valid), int(not valid), at)


class UsageBuffer:
    def __init__(self, app, interval: float) -> None:
        self._app = app
        self._interval = interval
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending = Pending()
        self._known_networks: set[tuple[int, str]] = set()
        self._thread = ProcessThread("keyfob-usage-flush", self._run)
        atexit.register(self._flush_at_exit)

    # -- recording (hot path) ------------------------------------------------------------------------------------

    def record_use(self, key_id: int, at: datetime, ip: str | None, verifier_id: int | None = None) -> None:
        with self._lock:
            pending = self._pending
            use = pending.uses.setdefault(key_id, KeyUse())
            use.count += 1
            # The same address as the key's last use in this batch (most uses) has had its network noted already.
            if ip and ip != use.last_ip:
                network = owner_alerts.network_of(ip)  # a cached lookup for an address seen before
                if network is not None and network not in pending.networks.get(key_id, ()):
                    pending.note_network(key_id, network, owner_alerts.Sighting(ip, at, verifier_id))
            if use.last_used_at is None or at >= use.last_used_at:
                use.last_used_at, use.last_ip = at, ip
            pending.daily[(key_id, at.date())][0] += 1
            if verifier_id is not None:
                pending.count_check(key_id, verifier_id, at, valid=True)
        self._thread.ensure_started()

    def record_request(self, key_id: int, verifier_id: int, at: datetime, method: str, path: str,
                       outcome: str) -> None:
        """What a service checked the key for: shown to the key's owner."""
        with self._lock:
            self._pending.recent[key_id].append({"key_id": key_id, "verifier_id": verifier_id, "at": at,
                                                 "method": method[:16], "path": path[:500], "outcome": outcome})
        self._thread.ensure_started()

    def record_failure(self, event: dict, key_id: int | None, at: datetime) -> None:
        """A refused check, audited with `event` (whose verifier_id says which service asked, if one did)."""
        with self._lock:
            if key_id is not None:
                self._pending.daily[(key_id, at.date())][1] += 1
            if event.get("verifier_id") is not None:
                self._pending.count_check(key_id, event["verifier_id"], at, valid=False)
            if len(self._pending.events) < MAX_PENDING_EVENTS:
                self._pending.events.append({**event, "created_at": at})
            else:
                self._pending.dropped_events += 1
        self._thread.ensure_started()

    def _run(self, stop: threading.Event) -> None:
        outage = False
        while not stop.wait(self._interval):
            try:
                self.flush()
            except SQLAlchemyError as error:
                if not is_outage(error):  # a bug: its traceback, each time
                    log.exception("usage flush failed; will retry")
                elif not outage:  # an outage: one line when it starts and one when it ends, not one per round
                    outage = True
                    log.warning("usage flush: the database is unavailable (%s); key uses are kept in memory and "
                                "written when it is back", error.__class__.__name__)
            except Exception:  # keep the flusher alive; the counts stay buffered for the next round
                log.exception("usage flush failed; will retry")
            else:
                if outage:
                    outage = False
                    log.warning("usage flush: the database is back; the key uses kept meanwhile are written")

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("usage flush at exit failed: %d key uses lost", self.pending_uses())

    def pending_uses(self) -> int:
        with self._lock:
            return sum(use.count for use in self._pending.uses.values())

    def stop(self) -> None:
        self._thread.stop()
        self.flush()

    # -- flushing ------------------------------------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything buffered so far. Returns the number of key uses written."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, Pending()
            if pending.empty():
                return 0
            try:
                with self._app.app_context():
                    self._write_or_set_aside(pending)
            except Exception:
                self._put_back(pending)
                raise
            if pending.dropped_events:
                log.warning("audit buffer was full: %d failed-verification events not recorded",
                            pending.dropped_events)
            self._write_networks(pending)
            return sum(use.count for use in pending.uses.values())

    def _write_networks(self, pending: Pending) -> None:
        """Record the networks and queue the new-network alerts, once the counts are committed: in a transaction of
        its own, so that nothing failing here can take back or double a count. It never raises: in an outage the
        networks go back to the buffer for the next flush; a bug is logged and its networks dropped (they are not
        recorded, so the next use from one is news again)."""
        if pending.dropped_networks:
            # Not a warning: a key used from many networks at once (a mobile app's) fills its few places often.
            log.info("usage flush: %d key networks did not fit the buffer; their next use is checked again",
                     pending.dropped_networks)
        known = self._known_networks
        sightings = {key_id: fresh for key_id, seen in pending.networks.items()
                     if (fresh := {network: sighting for network, sighting in seen.items()
                                   if (key_id, network) not in known})}
        if not sightings:
            return
        try:
            with self._app.app_context():
                owner_alerts.record_networks(sightings, utcnow())
        except Exception as error:
            if not (isinstance(error, SQLAlchemyError) and is_outage(error)):
                log.exception("usage flush: the key networks were not recorded")
                return
            log.warning("usage flush: the key networks wait for the database (%s)", error.__class__.__name__)
            with self._lock:
                self._pending.add_networks(sightings)
            return
        if len(known) > MAX_KNOWN_NETWORKS:
            known.clear()
        known.update((key_id, network) for key_id, seen in sightings.items() for network in seen)

    def _write_or_set_aside(self, pending: Pending) -> None:
        """Write the batch. An outage raises (the batch is put back for the next try); a row the database refuses
        for good must not block every later flush, so the counts are written without the events, and failing
        that the batch is dropped, each with an error in the log."""
        try:
            self._write(pending)
        except SQLAlchemyError as error:
            if is_outage(error) or not pending.events:
                raise
            log.error("usage flush: the database refused the batch (%s); writing its counts without its %d audit "
                      "events", error.__class__.__name__, len(pending.events))
            counts_only = Pending(uses=pending.uses, daily=pending.daily, by_verifier=pending.by_verifier,
                                  verifiers=pending.verifiers, recent=pending.recent)
            try:
                self._write(counts_only)
            except SQLAlchemyError as second:
                if is_outage(second):
                    pending.events = []
                    raise
                log.error("usage flush: the database refused the counts too (%s): %d key uses dropped",
                          second.__class__.__name__, sum(use.count for use in pending.uses.values()))

    def _write(self, pending: Pending) -> None:
        from app.extensions import db

        with db.engine.begin() as connection:
            # A key deleted since its use was buffered (its owner's account removed) must not make this batch
            # fail for ever: its counts go, its audit events stay without the key.
            referenced = set(pending.uses) | {key_id for key_id, _ in pending.daily} | {
                event["key_id"] for event in pending.events if event.get("key_id") is not None} | {
                key_id for key_id, _ in pending.by_verifier} | set(pending.recent)
            existing = set(connection.scalars(select(ApiKey.id).where(ApiKey.id.in_(referenced)))) \
                if referenced else set()
            verifiers = {event["verifier_id"] for event in pending.events if event.get("verifier_id") is not None}
            known_verifiers = set(connection.scalars(select(Verifier.id).where(Verifier.id.in_(verifiers)))) \
                if verifiers else set()
            for event in pending.events:
                if event.get("key_id") is not None and event["key_id"] not in existing:
                    event["key_id"] = None
                if event.get("verifier_id") is not None and event["verifier_id"] not in known_verifiers:
                    event["verifier_id"] = None
            for key_id, use in sorted(pending.uses.items()):
                at, ip = literal(use.last_used_at, UTCDateTime()), literal(use.last_ip, String())
                # Another process may have written a later use already: keep whichever is newest.
                newer = ApiKey.last_used_at.is_(None) | (ApiKey.last_used_at < at)
                connection.execute(
                    update(ApiKey).where(ApiKey.id == key_id).values(
                        usage_count=ApiKey.usage_count + use.count,
                        last_used_at=case((newer, at), else_=ApiKey.last_used_at),
                        last_used_ip=case((newer, ip), else_=ApiKey.last_used_ip),
                    )
                )
            rows = [{"key_id": key_id, "day": day, "requests": counts[0], "failures": counts[1]}
                    for (key_id, day), counts in sorted(pending.daily.items()) if key_id in existing]
            if rows:
                statement = upsert_insert(connection.dialect)(DailyKeyUsage)
                connection.execute(statement.on_conflict_do_update(
                    index_elements=["key_id", "day"],
                    set_={"requests": DailyKeyUsage.requests + statement.excluded.requests,
                          "failures": DailyKeyUsage.failures + statement.excluded.failures},
                ), rows)
            self._write_checks(connection, pending, existing)
            if pending.events:
                connection.execute(AuditEvent.__table__.insert(), pending.events)
                limit = limits.parse(self._app.config["FAILED_ATTEMPTS_ALERT"])
                raise_alerts(connection, pending.events, utcnow(), limit.amount, timedelta(seconds=limit.get_expiry()))

    @staticmethod
    def _write_checks(connection, pending: Pending, existing_keys: set[int]) -> None:
        """The verifiers' counts: per verifier, and per key and verifier (relative updates, newest time kept)."""
        if not pending.verifiers and not pending.recent:
            return
        asked = set(pending.verifiers) | {row["verifier_id"] for rows in pending.recent.values() for row in rows}
        known = set(connection.scalars(select(Verifier.id).where(Verifier.id.in_(asked))))
        for verifier_id, checks in sorted(pending.verifiers.items()):
            if verifier_id in known:
                at = literal(checks.last_at, UTCDateTime())
                newer = Verifier.last_used_at.is_(None) | (Verifier.last_used_at < at)
                connection.execute(update(Verifier).where(Verifier.id == verifier_id).values(
                    usage_count=Verifier.usage_count + checks.requests,
                    last_used_at=case((newer, at), else_=Verifier.last_used_at)))
        rows = [{"key_id": key_id, "verifier_id": verifier_id, "requests": checks.requests,
                 "failures": checks.failures, "last_used_at": checks.last_at}
                for (key_id, verifier_id), checks in sorted(pending.by_verifier.items())
                if key_id in existing_keys and verifier_id in known]
        if rows:
            statement = upsert_insert(connection.dialect)(KeyVerifierUsage)
            excluded = statement.excluded
            connection.execute(statement.on_conflict_do_update(
                index_elements=["key_id", "verifier_id"],
                set_={"requests": KeyVerifierUsage.requests + excluded.requests,
                      "failures": KeyVerifierUsage.failures + excluded.failures,
                      "last_used_at": case((KeyVerifierUsage.last_used_at.is_(None)
                                            | (KeyVerifierUsage.last_used_at < excluded.last_used_at),
                                            excluded.last_used_at), else_=KeyVerifierUsage.last_used_at)},
            ), rows)
        recent = [row for key_id, rows in sorted(pending.recent.items()) if key_id in existing_keys
                  for row in rows if row["verifier_id"] in known]
        if recent:
            connection.execute(KeyRecentRequest.__table__.insert(), recent)
            for key_id in sorted({row["key_id"] for row in recent}):
                newest = (select(KeyRecentRequest.id).where(KeyRecentRequest.key_id == key_id)
                          .order_by(KeyRecentRequest.at.desc(), KeyRecentRequest.id.desc()).limit(RECENT_REQUESTS_KEPT))
                connection.execute(delete(KeyRecentRequest).where(
                    KeyRecentRequest.key_id == key_id, KeyRecentRequest.id.not_in(newest.scalar_subquery())))

    def _put_back(self, pending: Pending) -> None:
        with self._lock:
            current = self._pending
            for key_id, use in pending.uses.items():
                merged = current.uses.setdefault(key_id, KeyUse())
                merged.count += use.count
                if merged.last_used_at is None or (use.last_used_at and use.last_used_at > merged.last_used_at):
                    merged.last_used_at, merged.last_ip = use.last_used_at, use.last_ip
            for day_key, counts in pending.daily.items():
                current.daily[day_key][0] += counts[0]
                current.daily[day_key][1] += counts[1]
            for pair, checks in pending.by_verifier.items():
                current.by_verifier[pair].add(checks.requests, checks.failures, checks.last_at)
            for verifier_id, checks in pending.verifiers.items():
                current.verifiers[verifier_id].add(checks.requests, checks.failures, checks.last_at)
            for key_id, rows in pending.recent.items():
                kept = current.recent[key_id]
                newer = list(kept)
                kept.clear()
                kept.extend([*rows, *newer])
            current.add_networks(pending.networks)
            current.dropped_networks += pending.dropped_networks
            room = MAX_PENDING_EVENTS - len(current.events)
            current.events[:0] = pending.events[:room]
            current.dropped_events += pending.dropped_events + max(0, len(pending.events) - room)
