"""The plumbing of server-rendered pages: one template environment, rendering, CSRF, flash messages, the
session cookie and the HTML error page. The pages themselves live with their domain (``<domain>/pages.py``,
templates under ``web/templates/<domain>/``) and are mounted in ``web.app``.

The session cookie (Starlette's SessionMiddleware, signed with a key kept in DATA_DIR/keys/session-secret)
holds the secret of a server-side session row (``BrowserSession``), a CSRF token and pending flash messages:
logout, a password change and "sign out everywhere" end the row at once, and the principal is re-derived from
the database on every request, so a deactivated account loses its session at once too.

CSRF: every form carries the session's token (``csrf_field()`` in templates; htmx sends it as the
``X-CSRF-Token`` header, set once on ``<body hx-headers>``), and every page POST is refused without it.
The Origin check and the SameSite=Lax cookie stay as second and third lines.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from dockyard.config import Settings
from dockyard.errors import DockyardError, Forbidden, Unauthenticated
from dockyard.web.context import RequestContext, endpoint
from dockyard.web.errors import api_status
from dockyard.web.formatting import FILTERS
from dockyard.web.identity import check_origin

SESSION_COOKIE = "dockyard_session"
SESSION_MAX_AGE = 12 * 3600
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
FLASH_KEY = "flash"
TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


# -- templates ---------------------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (which also starts an anonymous session cookie)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    return token


@cache
def static_version(name: str) -> str:
    """A short hash of a static file's content: its URL changes when it does, so it can be kept a year."""
    try:
        return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


@jinja2.pass_context
def _url(context: jinja2.runtime.Context, name: str, /, **params: Any) -> str:
    """The path of a named route (``url('repository', name='acme/app')``): never an absolute URL, so pages
    stay right behind a proxy that rewrites the host or the scheme."""
    request: Request = context["request"]
    return str(request.app.url_path_for(name, **{k: str(v) for k, v in params.items()}))


def _static(name: str) -> str:
    return f"/static/{name}?v={static_version(name)}"


@jinja2.pass_context
def _csrf_field(context: jinja2.runtime.Context) -> Markup:
    token = csrf_token(context["request"])
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)


@jinja2.pass_context
def _csrf_token(context: jinja2.runtime.Context) -> str:
    return csrf_token(context["request"])


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals.update(url=_url, static=_static, csrf_field=_csrf_field, csrf_token=_csrf_token)
    return env


TEMPLATES = Jinja2Templates(env=_environment())


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render ``name`` with the signed-in user, the flash messages and ``context``. An htmx request asking
    for a fragment gets only the template's ``content`` block when the view passes a ``fragment`` name."""
    principal = getattr(request.state, "principal", None)
    signed_in = principal is not None and principal.kind == "user"
    base = {
        "user": principal.name if signed_in else None,
        "principal": principal,
        "staff": sorted(r.value for r in principal.staff) if signed_in else [],
        "messages": request.session.pop(FLASH_KEY, []) if FLASH_KEY in request.session else [],
        "htmx": request.headers.get("hx-request") == "true",
        # DOCKYARD_SIGNUP: the layout offers "Create account" only while anyone may.
        "signup_open": request.app.state.dockyard.settings.signup_open,
    }
    response = TEMPLATES.TemplateResponse(request, name, {**base, **(context or {})}, status_code=status_code)
    if headers:
        response.headers.update(headers)
    # Pages show who is signed in and carry CSRF tokens: never kept by a shared cache.
    response.headers.setdefault("cache-control", "no-store")
    response.headers.setdefault("vary", "Cookie, HX-Request")
    return response


def flash(request: Request, message: str, kind: str = "success") -> None:
    """A message shown once, on the next page rendered for this browser (post/redirect/get)."""
    messages = list(request.session.get(FLASH_KEY, []))[-4:]
    messages.append({"kind": kind, "text": message})
    request.session[FLASH_KEY] = messages


def redirect(path: str, *, status_code: int = 303) -> Response:
    return RedirectResponse(path, status_code=status_code)


def safe_next(value: str | None, default: str = "/") -> str:
    """Only local paths: never an open redirect to another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


# -- forms and CSRF ----------------------------------------------------------------------------------------


async def form(request: Request) -> FormData:
    """The posted form, once its CSRF token (or htmx's header) matches the session's, and its Origin is
    this site's."""
    check_origin(request)
    data = await request.form(max_files=0, max_fields=200)
    sent = str(data.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
    expected = request.session.get(CSRF_KEY)
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(sent, expected):
        raise Forbidden("This form has expired or did not come from this site. Reload the page, try again.")
    return data


def text_field(data: FormData, name: str, *, limit: int = 1024) -> str:
    """A form field as text, stripped and capped (a form field is never a file here)."""
    value = data.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


# -- errors ------------------------------------------------------------------------------------------------

TITLES = {
    401: "Sign-in required",
    403: "Not allowed",
    404: "Page not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    429: "Too many attempts",
}


def html_error_response(request: Request, exc: DockyardError) -> Response:
    """Errors on pages: an HTML page; a page that needs a sign-in sends the browser to the sign-in form."""
    if isinstance(exc, Unauthenticated) and request.method in ("GET", "HEAD"):
        return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
    status = api_status(exc)
    # A 404 says nothing about why: a hidden repository looks exactly like a missing one.
    message = exc.message if status != 404 else "There is nothing at this address, or you may not see it."
    return status_page(request, status, message, headers=getattr(exc, "headers", None) or {})


def status_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The HTML error page, for routing errors too (an address no page has, a method a page won't take)."""
    if status == 405:
        message = "This page does not take that kind of request."
    title = TITLES.get(status, "Something is not right")
    context = {"title": title, "message": message, "status": status}
    return render(request, "error.html", context, status, headers=headers)


page: Callable[[Callable[[Request, RequestContext], Awaitable[Response]]], Callable] = endpoint(
    html_error_response
)


# -- the session cookie ------------------------------------------------------------------------------------


def session_secret(key_dir: Path) -> str:
    """The session-signing secret, created on first start and kept beside the token-signing key (the same
    in every worker process, however many start at once)."""
    from dockyard.storage.permissions import create_once

    secret = create_once(key_dir / "session-secret", lambda: secrets.token_urlsafe(48).encode())
    return secret.decode().strip()


def session_middleware(settings: Settings) -> Middleware:
    """Signed, HttpOnly, SameSite=Lax session cookie; Secure when the public URL is https."""
    return Middleware(
        SessionMiddleware,
        secret_key=session_secret(Path(settings.data_dir) / "keys"),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE,
        same_site="lax",
        https_only=settings.public_url.startswith("https://"),
    )
