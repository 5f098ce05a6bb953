"""What the account pages share: reading form fields, running an action whose refusal is shown beside its
form (with everything it wrote undone), the "mail me a link" form, and the registry login command shown with
a new secret."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from dockyard.accounts.models import TokenPurpose
from dockyard.accounts.passwords import MAX_PASSWORD_LENGTH
from dockyard.config import Settings
from dockyard.errors import DockyardError
from dockyard.web.context import RequestContext
from dockyard.web.errors import api_status
from dockyard.web.pages import form, render, text_field

if TYPE_CHECKING:
    from dockyard.services import Services

T = TypeVar("T")


def password_field(data: FormData, name: str) -> str:
    """A password as typed (not stripped: spaces may be part of it), capped just past the longest allowed,
    so an overlong one is refused, not cut."""
    value = data.get(name)
    return value[: MAX_PASSWORD_LENGTH + 1] if isinstance(value, str) else ""


def path(request: Request, name: str, **params: Any) -> str:
    """The path of a named route (for redirects)."""
    return str(request.app.url_path_for(name, **{k: str(v) for k, v in params.items()}))


def sentence(message: str) -> str:
    """A service's message ("name 'x' is taken") as a sentence for a page ("Name 'x' is taken.")."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


NAME_RULE = "Use 2 to 64 lowercase letters and digits, with single . _ or - between them."


class Refusal:
    """A domain error to show beside a form: its message per field, and the status the page answers."""

    def __init__(self, exc: DockyardError, field: str) -> None:
        self.exc = exc
        self.status = api_status(exc)
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        fields = detail.get("fields")
        if isinstance(fields, dict) and fields:
            self.errors = {str(k): sentence(str(v)) for k, v in fields.items()}
        else:
            # The service's account-name rule, as the pages say it.
            message = NAME_RULE if exc.message.startswith("invalid name") else sentence(exc.message)
            self.errors = {str(detail.get("field") or field): message}
        self.headers: dict[str, str] = dict(getattr(exc, "headers", None) or {})


async def attempt(
    ctx: RequestContext, action: Callable[[Services], T], *, field: str
) -> tuple[T | None, Refusal | None]:
    """Run ``action`` on the request's services: (its result, None), or on a domain error (None, the
    refusal to show beside the form). A refused action leaves nothing behind: its transaction is rolled
    back here, and whatever the page reads next to render the form again reads in a new one."""
    try:
        return await ctx.call(action), None
    except DockyardError as exc:
        await ctx.finish(commit=False)
        return None, Refusal(exc, field)


IDENTIFIER_MISSING = "Enter your username or email address."


async def send_link_form(
    request: Request,
    ctx: RequestContext,
    purpose: TokenPurpose,
    template: str,
    context: dict[str, Any],
    sent: Callable[[str], Response],
) -> Response:
    """The form asking for a ``purpose`` link by username or email address (``context`` holds its
    ``identifier`` and ``error``): on GET its page, on a blank entry the page with the error beside the
    field, else a link requested for what was typed and the answer of ``sent(identifier)``."""
    if request.method in ("GET", "HEAD"):
        return render(request, template, context)
    data = await form(request)
    identifier = text_field(data, "identifier", limit=320)
    if not identifier:
        return render(request, template, {**context, "error": IDENTIFIER_MISSING}, 400)
    # Only a job is queued, whatever was typed: the answer and its timing say nothing about accounts.
    await ctx.call(lambda sv: sv.selfservice.request_link(purpose, identifier, actor=ctx.actor))
    return sent(identifier)


def podman_login(settings: Settings, username: str, secret: str) -> str:
    """The command that logs podman in with a new secret (read from stdin: never in the process list)."""
    insecure = " --tls-verify=false" if settings.public_url.startswith("http://") else ""
    return (
        f"echo '{secret}' | podman login{insecure} --username '{username}' --password-stdin "
        f"{settings.registry_host}"
    )
