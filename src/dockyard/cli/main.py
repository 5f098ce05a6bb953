"""The ``dockyard`` command: serve, migrate, users, staff, organisations, robots, tokens, gc, scan, vulndb.

Every command that changes something runs in a unit of work of the composition root (``act``).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console

from dockyard.authz import StaffRole, parse_scopes
from dockyard.cli.demo import demo
from dockyard.cli.product import product_app
from dockyard.cli.scan import scan
from dockyard.cli.vulndb import vulndb_app
from dockyard.cli.worker import worker
from dockyard.config import Settings
from dockyard.errors import DockyardError

# SQLAlchemy, the models and the services are imported by the commands that use them: `dockyard --help`
# and `dockyard scan` start without them.
if TYPE_CHECKING:
    from dockyard.events import Actor
    from dockyard.services import Services

app = typer.Typer(help="dockyard: a self-hosted container content store.", no_args_is_help=True)
users = typer.Typer(help="Manage users.", no_args_is_help=True)
orgs = typer.Typer(help="Manage organisations and their members.", no_args_is_help=True)
robots = typer.Typer(help="Manage organisations' robot accounts.", no_args_is_help=True)
repos = typer.Typer(help="Manage repositories.", no_args_is_help=True)
staff_app = typer.Typer(help="Manage the store team's roles.", no_args_is_help=True)
app.add_typer(users, name="user")
app.add_typer(orgs, name="org")
app.add_typer(robots, name="robot")
app.add_typer(repos, name="repo")
app.add_typer(staff_app, name="staff")
app.add_typer(vulndb_app, name="vulndb")
app.add_typer(product_app, name="product")
app.command("scan")(scan)
app.command("worker")(worker)
app.command("demo")(demo)
console = Console()
T = TypeVar("T")
STAFF_ROLES = ", ".join(r.value for r in StaffRole)
err = Console(stderr=True)


@app.callback()
def _private_files(ctx: typer.Context) -> None:
    # No docstring: it would replace the app's help. Every command may create files in the data dir
    # (the database, blobs, keys, SQLite's -wal/-shm) and granian's worker processes inherit the umask:
    # 0077 makes all of them private. Restored when the command ends, for in-process callers (tests).
    from dockyard.storage.permissions import restrict_umask

    previous = restrict_umask()
    ctx.call_on_close(lambda: os.umask(previous))


def cli_actor() -> Actor:
    """Who the audit log says acted: the operating-system user who ran the command."""
    from dockyard.events import Actor

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return Actor(name=f"cli:{who}", kind="system")


def act(action: Callable[[Services, Actor], T], settings: Settings | None = None) -> T:
    """Run ``action`` in one unit of work of the composition root (so every event subscriber runs, as it
    would for the same action taken through the API); a domain error is one red line and exit code 1."""
    from dockyard.runtime import build_runtime

    runtime = build_runtime(settings or Settings.from_env())
    try:
        with runtime.unit_of_work() as services:
            return action(services, cli_actor())
    except DockyardError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        runtime.engine.dispose()


@app.command()
def serve() -> None:
    """Apply migrations, create the administrator on first start, and serve HTTP."""
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.server import Server

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The data dir is prepared here, once, before the worker processes start (they find nothing left to
    # tighten, so the log line is not repeated per worker).
    generated = act(lambda sv, actor: sv.accounts.ensure_admin(settings.admin_password), settings)
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
        # A request's header must arrive within 10 s (granian's default is 30 s): slow-header clients
        # cannot hold connections for long.
        http1_settings=HTTP1Settings(header_read_timeout=10_000),
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
    staff = ("store-admin",) if admin else ()
    act(
        lambda sv, actor: sv.accounts.create_user(
            username, password, email=email or None, staff=staff, actor=actor
        )
    )
    console.print(f"created user {username}")


@users.command("passwd")
def user_passwd(
    username: str, password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True)
) -> None:
    """Set a user's password."""
    act(lambda sv, actor: sv.accounts.set_password(username, password, actor=actor))
    console.print("password changed; the user's browser sessions and refresh tokens have ended")


@users.command("sign-out-everywhere")
def user_sign_out_everywhere(username: str) -> None:
    """End every browser session and refresh token of a user (access tokens stay: revoke them one by one)."""
    act(lambda sv, actor: sv.accounts.sign_out_everywhere(username, actor=actor))
    console.print(f"signed {username} out everywhere")


@users.command("list")
def user_list() -> None:
    """List users."""
    staff: dict[str, list[str]] = {}
    users_found = act(lambda sv, actor: (sv.accounts.list_users(), sv.accounts.staff()))
    for username, role in users_found[1]:
        staff.setdefault(username, []).append(role)
    for u in users_found[0]:
        console.print(f"{u.username}\t{','.join(staff.get(u.username, []))}")


@users.command("token")
def user_token(
    username: str,
    name: str = "cli",
    days: int = 0,
    scope: list[str] = typer.Option(["pull", "push"], help="pull, push and/or api (account management)"),
) -> None:
    """Create a personal access token (printed once)."""
    scopes = parse_scopes(scope)
    _token, secret = act(
        lambda sv, actor: sv.accounts.create_token(
            username, name, expires_in_days=days or None, scopes=scopes, actor=actor
        )
    )
    console.print(secret)


@orgs.command("create")
def org_create(name: str, owner: str) -> None:
    """Create an organisation owned by ``owner``."""
    act(lambda sv, actor: sv.accounts.create_org(name, owner, actor=actor))
    console.print(f"created organisation {name}")


@orgs.command("member")
def org_member(
    org: str,
    username: str,
    role: str = typer.Option("reader", help="owner|maintainer|reader"),
    remove: bool = False,
) -> None:
    """Add a member, change their role, or remove them."""
    if remove:
        act(lambda sv, actor: sv.accounts.remove_member(org, username, actor=actor))
    else:
        act(lambda sv, actor: sv.accounts.set_member(org, username, role, actor=actor))
    console.print("done")


@robots.command("create")
def robot_create(org: str, name: str, role: str = typer.Option("reader", help="maintainer|reader")) -> None:
    """Create a robot account; prints its login and secret once."""
    _robot, secret = act(lambda sv, actor: sv.accounts.create_robot(org, name, role, actor=actor))
    console.print(json.dumps({"username": f"{org}+{name}", "secret": secret}))


@robots.command("delete")
def robot_delete(org: str, name: str) -> None:
    """Delete a robot account."""
    act(lambda sv, actor: sv.accounts.delete_robot(org, name, actor=actor))


@repos.command("visibility")
def repo_visibility(name: str, public: bool = typer.Option(..., "--public/--private")) -> None:
    """Make a repository public or private."""
    act(lambda sv, actor: sv.registry.set_visibility(name, public, actor))


@staff_app.command("grant")
def staff_grant(
    username: str, role: str = typer.Argument(..., help=", ".join(r.value for r in StaffRole))
) -> None:
    """Give a user a store-team role."""
    act(lambda sv, actor: sv.accounts.grant_staff(username, role, actor=actor))
    console.print(f"{username} is {role}")


@staff_app.command("revoke")
def staff_revoke(
    username: str, role: str = typer.Argument(..., help=", ".join(r.value for r in StaffRole))
) -> None:
    """Take a store-team role away (the last store-admin stays)."""
    act(lambda sv, actor: sv.accounts.revoke_staff(username, role, actor=actor))
    console.print(f"{username} is no longer {role}")


@staff_app.command("list")
def staff_list() -> None:
    """The store team: each user and role."""
    for username, role in act(lambda sv, actor: sv.accounts.staff()):
        console.print(f"{username}\t{role}")


@app.command()
def gc(
    dry_run: bool = False, grace: int = typer.Option(-1, help="seconds; default DOCKYARD_GC_GRACE")
) -> None:
    """Remove unreferenced blobs and expired upload sessions (safe while the server runs)."""
    from dockyard.registry.gc import collect
    from dockyard.runtime import build_runtime

    runtime = build_runtime(Settings.from_env())
    try:
        settings = runtime.settings
        report = collect(
            runtime.sessions,
            runtime.blobs,
            runtime.bus,
            grace=settings.gc_grace if grace < 0 else grace,
            upload_ttl=settings.upload_ttl,
            dry_run=dry_run,
        )
    finally:
        runtime.engine.dispose()
    console.print(json.dumps(report.__dict__))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
