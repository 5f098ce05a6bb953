"""The composition root: settings -> engine -> blob store -> services -> event subscribers -> job registry.

The server (``web.app.create_app``), ``dockyard worker`` and every CLI command build one ``Runtime`` the same
way, so an event subscriber (the audit row, the scan queued on a push, an email) runs however an action is
taken. ``Runtime.unit_of_work`` is the one transaction boundary outside requests: open a session, hand out
``Services`` on it, commit, then run the after-commit handlers. Requests use the same ``finish`` through
``web.context.RequestContext``, jobs through ``jobs.JobContext``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dockyard.accounts.credential_cache import VerifiedPasswords
from dockyard.config import Settings
from dockyard.db import at_head, finish, make_engine, make_session_factory, migrate
from dockyard.entitlements.store import StoreCache
from dockyard.events import EventBus
from dockyard.registry.auth import TokenSigner
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver

if TYPE_CHECKING:
    from dockyard.delivery.urls import BlobUrlSigner
    from dockyard.entitlements.downloads import DownloadRecorder
    from dockyard.jobs import JobRegistry
    from dockyard.registry.pulls import PullRecorder
    from dockyard.services import Services


@dataclass
class Runtime:
    """Everything built once per process and shared by every request, job and command."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    bus: EventBus
    signer: TokenSigner
    pull_recorder: PullRecorder | None = None
    # Download events of store paths, batched like pull events (None: written in the request).
    download_recorder: DownloadRecorder | None = None
    # What published revisions offer, by revision id (entitlements/store.py): a store pull reads no manifest.
    store_cache: StoreCache = field(default_factory=StoreCache)
    # Signs blob redirects while this process's blob delivery server runs (None: blobs are sent inline).
    blob_urls: BlobUrlSigner | None = None
    # SQLite allows one writer: this process's writing requests queue here, holding no worker thread.
    write_gate: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Passwords this process verified moments ago (repeated logins skip argon2; accounts/credential_cache.py).
    verified_passwords: VerifiedPasswords = field(default_factory=VerifiedPasswords)
    _binds: dict[bool, Engine] = field(default_factory=dict, repr=False)
    _jobs: JobRegistry | None = field(default=None, repr=False)

    def bind(self, *, write: bool) -> Engine:
        """The engine for reading or writing work (SQLite: BEGIN or BEGIN IMMEDIATE), made once."""
        engine = self._binds.get(write)
        if engine is None:
            engine = self._binds[write] = self.engine.execution_options(sqlite_write=write)
        return engine

    @property
    def jobs(self) -> JobRegistry:
        """Every job kind, with the event subscribers that enqueue them wired into the bus (once)."""
        if self._jobs is None:
            self._jobs = _wire(self)
        return self._jobs

    def services(self, session: Session) -> Services:
        """The domain services, on ``session`` (the caller owns its transaction)."""
        from dockyard.services import Services

        return Services(session, self)

    @contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Services]:
        """One transaction: the services on it, committed at the end (rolled back on an error), then the
        after-commit handlers. Subscribers are wired first, so none is missed."""
        self.jobs  # noqa: B018 - wires the subscribers
        session = self.sessions(bind=self.bind(write=write))
        try:
            services = self.services(session)
            yield services
        except BaseException as exc:
            events = finish(session, commit=getattr(exc, "keep_writes", False))
            self.bus.run_after_commit(events)
            raise
        self.bus.run_after_commit(finish(session, commit=True))


def _wire(runtime: Runtime) -> JobRegistry:
    """Every job kind and handler, and the subscribers that enqueue jobs in their events' transactions."""
    from dockyard import jobs as job_queue
    from dockyard.accounts import jobs as accounts_jobs
    from dockyard.accounts import notifications as accounts_notifications
    from dockyard.alerts import jobs as alerts_jobs
    from dockyard.alerts import notifications as alerts_notifications
    from dockyard.compliance import hooks as compliance_hooks
    from dockyard.compliance import jobs as compliance_jobs
    from dockyard.compliance import notifications as compliance_notifications
    from dockyard.email import jobs as email_jobs
    from dockyard.moderation import notifications as moderation_notifications
    from dockyard.publishing import notifications as publishing_notifications
    from dockyard.scanning import jobs as scanning_jobs
    from dockyard.store import listings
    from dockyard.webhooks import jobs as webhook_jobs

    registry = job_queue.JobRegistry()
    job_queue.register(registry)
    accounts_jobs.register(registry)
    accounts_notifications.subscribe(runtime.bus, runtime.settings)
    email_jobs.register(registry, runtime.settings)
    moderation_notifications.subscribe(runtime.bus, runtime.settings)
    publishing_notifications.subscribe(runtime.bus, runtime.settings)
    scanning_jobs.register(registry, runtime.blobs, runtime.bus, runtime.settings)
    scanning_jobs.subscribe(runtime.bus)
    listings.subscribe(runtime.bus, runtime.blobs)
    # After the listings' subscriber: the compliance state of a product is kept on its listing.
    compliance_jobs.register(registry, runtime.settings)
    compliance_jobs.subscribe(runtime.bus)
    compliance_jobs.subscribe_publishing(runtime.bus, runtime.services)
    compliance_notifications.subscribe(runtime.bus, runtime.settings)
    compliance_hooks.subscribe(runtime.bus, runtime.services, runtime.settings.public_url)
    webhook_jobs.register(registry, runtime)
    webhook_jobs.subscribe(runtime.bus, runtime)
    alerts_jobs.register(registry, runtime.settings)
    alerts_jobs.subscribe(runtime.bus)
    alerts_notifications.subscribe(runtime.bus, runtime.settings)
    return registry


def build_runtime(settings: Settings, *, run_migrations: bool = True, **extra: Any) -> Runtime:
    """The runtime of one process: data dir prepared, engine (migrated), blob store, bus, token signer."""
    from dockyard.storage.permissions import prepare_data_dir, private_mkdir

    data = Path(settings.data_dir)
    # Password hashes, private layers and keys: the data dir is 0700 and the SQLite files under it 0600
    # however this process was started; what an older version left open is tightened (and logged).
    prepare_data_dir(data, settings.database_url)
    engine = make_engine(settings.database_url)
    # One query when the schema is current: alembic's import and its upgrade's look at the scripts cost
    # every command and server start 0.8 s.
    if run_migrations and not at_head(engine):
        migrate(engine)
    blobs = BlobStore(LocalDriver(data / "storage"), data / "uploads")
    private_mkdir(data / "keys")  # TokenSigner would create it with the umask's mode
    signer = TokenSigner.from_dir(
        data / "keys", issuer=settings.public_url, service=settings.service_name, ttl=settings.token_ttl
    )
    return Runtime(settings, engine, make_session_factory(engine), blobs, EventBus(), signer, **extra)
