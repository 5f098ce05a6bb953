"""Pull events, written in batches off the request path.

A manifest GET is the hottest request a registry serves. Writing its audit row in the request would make
every pull a write transaction (on SQLite: one writer at a time). Instead the row is queued here and a
background thread writes what has accumulated every ``interval`` seconds, in one transaction. A crash can
lose at most that interval's pull events; pushes, deletes and logins are still written in their request.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from dockyard.audit.models import AuditEvent
from dockyard.events import Event

log = logging.getLogger("dockyard.registry")


class PullRecorder:
    def __init__(self, sessions: sessionmaker[Session], interval: float) -> None:
        self.sessions = sessions
        self.interval = interval
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, event: Event) -> None:
        """Queue one pull event's audit row."""
        row = AuditEvent.row_from_event(event)
        with self._lock:
            self._rows.append(row)

    def flush(self) -> int:
        """Write every queued row now; returns how many."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            with self.sessions() as session, session.begin():
                session.connection(execution_options={"sqlite_write": True})
                session.execute(AuditEvent.__table__.insert(), rows)
        except Exception:  # keep the rows for the next round rather than lose them to a busy database
            log.exception("writing %d pull events failed; retrying", len(rows))
            with self._lock:
                self._rows[:0] = rows
            return 0
        return len(rows)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pull-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()
