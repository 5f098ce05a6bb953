"""Rows written in batches off the request path: pull events (audit rows of manifest GETs) and, through the
same ``BatchWriter``, the store's download events (entitlements/downloads.py).

A manifest GET is the hottest request a registry serves. Writing its row in the request would make every
pull a write transaction (on SQLite: one writer at a time). Instead the row is queued here and a background
thread writes what has accumulated every ``interval`` seconds, in one transaction. A crash can lose at most
that interval's rows; pushes, deletes and logins are still written in their request.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from dockyard.audit.models import AuditEvent
from dockyard.events import Event

log = logging.getLogger("dockyard.registry")


class BatchWriter:
    """Queue rows from any thread; a background thread writes them every ``interval`` seconds with
    ``write`` (subclasses say how), in one transaction, keeping them for the next round if it fails."""

    name = "batch-writer"

    def __init__(self, sessions: sessionmaker[Session], interval: float) -> None:
        self.sessions = sessions
        self.interval = interval
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, row: dict[str, Any]) -> None:
        """Queue one row."""
        with self._lock:
            self._rows.append(row)

    def write(self, session: Session, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def flush(self) -> int:
        """Write every queued row now; returns how many."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            with self.sessions() as session, session.begin():
                session.connection(execution_options={"sqlite_write": True})
                self.write(session, rows)
        except Exception:  # keep the rows for the next round rather than lose them to a busy database
            log.exception("writing %d rows (%s) failed; retrying", len(rows), self.name)
            with self._lock:
                self._rows[:0] = rows
            return 0
        return len(rows)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()


class PullRecorder(BatchWriter):
    """Pull events' audit rows."""

    name = "pull-recorder"

    def record(self, event: Event) -> None:
        """Queue one pull event's audit row."""
        self.add(AuditEvent.row_from_event(event))

    def write(self, session: Session, rows: list[dict[str, Any]]) -> None:
        session.execute(AuditEvent.__table__.insert(), rows)
