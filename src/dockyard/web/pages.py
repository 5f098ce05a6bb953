"""Server-rendered pages (Jinja2, autoescaped): login/logout with a signed session cookie, and the scan page.

The session cookie (Starlette's SessionMiddleware, signed with a key kept in DATA_DIR/keys/session-secret)
holds only the secret of a server-side session row (``BrowserSession``): logout, a password change and "sign
out everywhere" end it at once, and the principal is re-derived from the database on every request, so a
deactivated account loses its session at once too. CSRF: the cookie is SameSite=Lax and every POST must
carry an Origin (or Referer) of this site when it carries one at all.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from dockyard.config import Settings
from dockyard.errors import DockyardError, Invalid, TooManyRequests, Unauthenticated
from dockyard.scanning.models import SEVERITY_CLASSES
from dockyard.scanning.presenters import visible_report
from dockyard.scanning.report import short_digest
from dockyard.web.context import RequestContext, endpoint
from dockyard.web.errors import api_status
from dockyard.web.identity import check_origin, end_session, session_principal, start_session
from dockyard.web.identity import login as login_with

SESSION_COOKIE = "dockyard_session"
SESSION_MAX_AGE = 12 * 3600
TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
TEMPLATES.env.filters["short_digest"] = lambda d: short_digest(d) if d else ""


def session_secret(key_dir: Path) -> str:
    """The session-signing secret, created on first start and kept beside the token-signing key."""
    key_dir.mkdir(parents=True, exist_ok=True)
    path = key_dir / "session-secret"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(secret)
    tmp.chmod(0o600)
    tmp.replace(path)
    return path.read_text().strip()


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


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    principal = getattr(request.state, "principal", None)
    context = {"user": principal.name if principal is not None else None, **context}
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def html_error_response(request: Request, exc: DockyardError) -> Response:
    """Errors on pages: an HTML page; a page that needs a login sends the browser to the login form."""
    if isinstance(exc, Unauthenticated) and request.method == "GET":
        return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
    status = api_status(exc)
    title = {
        401: "Login required",
        403: "Forbidden",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        429: "Too many attempts",
    }.get(status, "Bad request")
    # A 404 says nothing about why: a hidden repository looks exactly like a missing one.
    message = "The page you asked for does not exist." if status == 404 else exc.message
    response = render(request, "error.html", {"title": title, "message": message, "status": status}, status)
    response.headers.update(getattr(exc, "headers", None) or {})
    return response


page = endpoint(html_error_response)


def _safe_next(value: str | None) -> str:
    # Only local paths: never an open redirect to another site.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


@page
async def login(request: Request, ctx: RequestContext) -> Response:
    if request.method in ("GET", "HEAD"):
        return render(
            request, "login.html", {"next": _safe_next(request.query_params.get("next")), "error": None}
        )
    check_origin(request)
    form = await request.form()
    username = str(form.get("username") or "").strip()[:64]
    password = str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or ""))
    try:
        # Robots use the API, not the pages: their names never sign in here.
        principal = await login_with(ctx, username if "+" not in username else "-", password)
    except TooManyRequests as exc:
        wait = exc.retry_after
        later = f"{-(-wait // 60)} minutes" if wait > 90 else f"{wait} seconds"
        context = {"next": target, "error": f"Too many failed attempts. Try again in {later}."}
        response = render(request, "login.html", context, status_code=429)
        response.headers.update(exc.headers)
        return response
    except Unauthenticated:
        # The view answers normally, so the edge commits the failure's audit row and throttle count.
        context = {"next": target, "error": "Invalid username or password."}
        return render(request, "login.html", context, status_code=401)
    if principal.kind != "user" or principal.via != "password":
        context = {"next": target, "error": "Sign in with your password; tokens are for the API."}
        return render(request, "login.html", context, status_code=401)
    await start_session(ctx, principal)
    return RedirectResponse(target, status_code=303)


@page
async def logout(request: Request, ctx: RequestContext) -> Response:
    check_origin(request)
    await end_session(ctx)
    return RedirectResponse("/ui/login", status_code=303)


@page
async def sign_out_everywhere(request: Request, ctx: RequestContext) -> Response:
    check_origin(request)
    principal = await session_principal(ctx)
    await ctx.run(ctx.accounts().sign_out_everywhere, principal.name, actor=ctx.actor)
    request.session.clear()
    return RedirectResponse("/ui/login", status_code=303)


@page
async def home(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    return render(request, "home.html", {"principal": principal})


@page
async def scan_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    name, reference = request.path_params["name"], request.path_params["reference"]
    severity = request.query_params.get("severity") or None
    if severity is not None and severity not in SEVERITY_CLASSES:
        raise Invalid(f"unknown class {severity!r}")
    report = await ctx.call(lambda sv: visible_report(sv.scans, principal, name, reference))
    findings = [f for f in report.findings if severity is None or f.severity == severity]
    context = {
        "report": report,
        "reference": reference,
        "findings": findings,
        "severity": severity,
        "classes": SEVERITY_CLASSES,
    }
    return render(request, "scan.html", context)


routes = [
    Route("/ui/login", login, methods=["GET", "POST"]),
    Route("/ui/logout", logout, methods=["POST"]),
    Route("/ui/sign-out-everywhere", sign_out_everywhere, methods=["POST"]),
    Route("/ui/", home, methods=["GET"]),
    Route("/ui/repositories/{name:path}/scans/{reference}", scan_page, methods=["GET"]),
]
