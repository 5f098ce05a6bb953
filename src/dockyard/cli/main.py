"""The ``dockyard`` command: serve, migrate, users, organisations, robots, tokens, gc, scan, vulndb."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from dockyard.authz import parse_scopes
from dockyard.cli.scan import scan
from dockyard.cli.vulndb import vulndb_app
from dockyard.cli.worker import worker
from dockyard.config import Settings
from dockyard.errors import DockyardError

# SQLAlchemy, the models and the services are imported by the commands that use them: `dockyard --help`
# and `dockyard scan` start without them.
if TYPE_CHECKING:
    from sqlalchemy.orm import Session

app = typer.Typer(help="dockyard: a self-hosted container content store.", no_args_is_help=True)
users = typer.Typer(help="Manage users.", no_args_is_help=True)
orgs = typer.Typer(help="Manage organisations and their members.", no_args_is_help=True)
robots = typer.Typer(help="Manage organisations' robot accounts.", no_args_is_help=True)
repos = typer.Typer(help="Manage repositories.", no_args_is_help=True)
app.add_typer(users, name="user")
app.add_typer(orgs, name="org")
app.add_typer(robots, name="robot")
app.add_typer(repos, name="repo")
app.add_typer(vulndb_app, name="vulndb")
app.command("scan")(scan)
app.command("worker")(worker)
console = Console()
err = Console(stderr=True)


@app.callback()
def _private_files(ctx: typer.Context) -> None:
    # No docstring: it would replace the app's help. Every command may create files in the data dir
    # (the database, blobs, keys, SQLite's -wal/-shm) and granian's worker processes inherit the umask:
    # 0077 makes all of them private. Restored when the command ends, for in-process callers (tests).
    from dockyard.storage.permissions import restrict_umask

    previous = restrict_umask()
    ctx.call_on_close(lambda: os.umask(previous))


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[Session]:
    from dockyard.db import make_engine, make_session_factory, migrate
    from dockyard.storage.permissions import prepare_data_dir

    settings = settings or Settings.from_env()
    # Tighten what an older version left open; a missing data dir is made by SQLite under our umask.
    prepare_data_dir(settings.data_dir, settings.database_url, create=False)
    engine = make_engine(settings.database_url)
    migrate(engine)
    session = make_session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
        engine.dispose()


def run(action: Callable[[Session], Any]) -> Any:
    try:
        with transaction() as session:
            return action(session)
    except DockyardError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc


@app.command()
def serve() -> None:
    """Apply migrations, create the administrator on first start, and serve HTTP."""
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # transaction() prepares the data dir here, once, before the worker processes start (they find
    # nothing left to tighten, so the log line is not repeated per worker).
    with transaction(settings) as session:
        generated = AccountService(session, EventBus()).ensure_admin(settings.admin_password)
    if generated:
        console.print(f"created user [bold]admin[/bold] with password: [bold]{generated}[/bold] (shown once)")
    console.print(f"dockyard listening on {settings.public_url} (data in {settings.data_dir})")
    if settings.blob_delivery:
        console.print(f"blob downloads redirect to {settings.blob_public_url} (DOCKYARD_BLOB_LISTEN)")
    Server(
        "dockyard.web.app:app_from_env",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,  # a dependency: the asyncio loop costs about a third more CPU per request
        workers=settings.workers,
        runtime_threads=2,
        blocking_threads=1,
        factory=True,
        log_access=False,
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        backpressure=256,
    ).serve()


@app.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date."""
    from dockyard.db import make_engine, migrate
    from dockyard.storage.permissions import prepare_data_dir

    settings = Settings.from_env()
    prepare_data_dir(settings.data_dir, settings.database_url, create=False)
    migrate(make_engine(settings.database_url))
    console.print("database is up to date")


@users.command("create")
def user_create(
    username: str,
    password: str = typer.Option(..., prompt=True, hide_input=True),
    email: str = "",
    admin: bool = False,
) -> None:
    """Create a user (and the personal namespace named after it)."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    run(
        lambda s: AccountService(s, EventBus()).create_user(
            username, password, email=email or None, is_admin=admin
        )
    )
    console.print(f"created user {username}")


@users.command("passwd")
def user_passwd(
    username: str, password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True)
) -> None:
    """Set a user's password."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    run(lambda s: AccountService(s, EventBus()).set_password(username, password))
    console.print("password changed; the user's browser sessions and refresh tokens have ended")


@users.command("sign-out-everywhere")
def user_sign_out_everywhere(username: str) -> None:
    """End every browser session and refresh token of a user (access tokens stay: revoke them one by one)."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    run(lambda s: AccountService(s, EventBus()).sign_out_everywhere(username))
    console.print(f"signed {username} out everywhere")


@users.command("list")
def user_list() -> None:
    """List users."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    for u in run(lambda s: AccountService(s, EventBus()).list_users()):
        console.print(f"{u.username}\t{'admin' if u.is_admin else ''}")


@users.command("token")
def user_token(
    username: str,
    name: str = "cli",
    days: int = 0,
    scope: list[str] = typer.Option(["pull", "push"], help="pull, push and/or api (account management)"),
) -> None:
    """Create a personal access token (printed once)."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    scopes = parse_scopes(scope)
    _token, secret = run(
        lambda s: AccountService(s, EventBus()).create_token(
            username, name, expires_in_days=days or None, scopes=scopes
        )
    )
    console.print(secret)


@orgs.command("create")
def org_create(name: str, owner: str) -> None:
    """Create an organisation owned by ``owner``."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    run(lambda s: AccountService(s, EventBus()).create_org(name, owner))
    console.print(f"created organisation {name}")


@orgs.command("member")
def org_member(
    org: str,
    username: str,
    role: str = typer.Option("reader", help="owner|maintainer|reader"),
    remove: bool = False,
) -> None:
    """Add a member, change their role, or remove them."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    if remove:
        run(lambda s: AccountService(s, EventBus()).remove_member(org, username))
    else:
        run(lambda s: AccountService(s, EventBus()).set_member(org, username, role))
    console.print("done")


@robots.command("create")
def robot_create(org: str, name: str, role: str = typer.Option("reader", help="maintainer|reader")) -> None:
    """Create a robot account; prints its login and secret once."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    _robot, secret = run(lambda s: AccountService(s, EventBus()).create_robot(org, name, role))
    console.print(json.dumps({"username": f"{org}+{name}", "secret": secret}))


@robots.command("delete")
def robot_delete(org: str, name: str) -> None:
    """Delete a robot account."""
    from dockyard.accounts.services import AccountService
    from dockyard.events import EventBus

    run(lambda s: AccountService(s, EventBus()).delete_robot(org, name))


@repos.command("visibility")
def repo_visibility(name: str, public: bool = typer.Option(..., "--public/--private")) -> None:
    """Make a repository public or private."""
    from dockyard.events import Actor, EventBus
    from dockyard.registry.services import RegistryService
    from dockyard.storage.blobstore import BlobStore
    from dockyard.storage.local import LocalDriver

    settings = Settings.from_env()
    blobs = BlobStore(LocalDriver(settings.data_dir / "storage"), settings.data_dir / "uploads")
    run(
        lambda s: RegistryService(s, blobs, EventBus(), settings).set_visibility(name, public, Actor.system())
    )


@app.command()
def gc(
    dry_run: bool = False, grace: int = typer.Option(-1, help="seconds; default DOCKYARD_GC_GRACE")
) -> None:
    """Remove unreferenced blobs and expired upload sessions (safe while the server runs)."""
    from dockyard.db import make_engine, make_session_factory, migrate
    from dockyard.events import EventBus
    from dockyard.registry.gc import collect
    from dockyard.storage.blobstore import BlobStore
    from dockyard.storage.local import LocalDriver
    from dockyard.storage.permissions import prepare_data_dir

    settings = Settings.from_env()
    prepare_data_dir(settings.data_dir, settings.database_url)
    engine = make_engine(settings.database_url)
    migrate(engine)
    blobs = BlobStore(LocalDriver(settings.data_dir / "storage"), settings.data_dir / "uploads")
    report = collect(
        make_session_factory(engine),
        blobs,
        EventBus(),
        grace=settings.gc_grace if grace < 0 else grace,
        upload_ttl=settings.upload_ttl,
        dry_run=dry_run,
    )
    console.print(json.dumps(report.__dict__))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
