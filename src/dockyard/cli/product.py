"""``dockyard product``: products as code. ``validate`` checks a ``dockyard-product.yaml`` offline (with the
logo, screenshots and Markdown files it names, read relative to it); ``push`` uploads its images and creates
or updates the product's draft over the API with an access token, and may submit it.

Problems are printed one a line, ``path: message`` in the manifest's own spelling, and the exit code is 2.
Heavy imports (YAML, pydantic, httpx) happen inside the commands: ``dockyard --help`` stays fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from dockyard.publishing.manifest import Problem

product_app = typer.Typer(
    help="Products as code: check and push a dockyard-product.yaml.", no_args_is_help=True
)

MANIFEST_FILE = "dockyard-product.yaml"
MARKDOWN_FIELDS = ("long_description", "install")
MARKDOWN_SUFFIXES = (".md", ".markdown", ".txt")
DRAFT_HELP = "check only the form of the fields (a draft may be incomplete), not what submitting needs"
TOKEN_HELP = "an access token with the api scope (default: $DOCKYARD_TOKEN)"


@dataclass
class Loaded:
    """A manifest file read with the files it names: ``data`` has the Markdown inlined; ``images`` maps a
    field path ("logo", "screenshots[0]") to the image file's bytes and media type."""

    data: dict[str, Any]
    folder: Path
    problems: list[Problem] = field(default_factory=list)
    images: dict[str, tuple[bytes, str]] = field(default_factory=dict)


def _inside(folder: Path, name: str) -> Path | None:
    """``name`` resolved in ``folder``; None when it would leave it (``../``, an absolute path)."""
    path = (folder / name).resolve()
    return path if path.is_relative_to(folder.resolve()) else None


def load(target: Path) -> Loaded:
    """Read ``target`` (a folder holding dockyard-product.yaml, or the file) and the files it names."""
    import yaml

    from dockyard.publishing.manifest import Problem

    file = target / MANIFEST_FILE if target.is_dir() else target
    if not file.is_file():
        return Loaded({}, file.parent, [Problem("", f"{file}: no such file")])
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        return Loaded({}, file.parent, [Problem("", f"{file.name} is not valid YAML{line}")])
    if not isinstance(data, dict):
        return Loaded({}, file.parent, [Problem("", f"{file.name} must hold a mapping of fields")])
    loaded = Loaded(dict(data), file.parent)
    for name in MARKDOWN_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and "\n" not in value and value.strip().lower().endswith(MARKDOWN_SUFFIXES):
            loaded.data[name] = _read_text(loaded, name, value.strip())
    if isinstance(data.get("logo"), str):
        _read_image(loaded, "logo", data["logo"], logo=True)
    shots = data.get("screenshots")
    if isinstance(shots, list):
        for i, shot in enumerate(shots):
            if isinstance(shot, str):
                _read_image(loaded, f"screenshots[{i}]", shot, logo=False)
    return loaded


def _read_text(loaded: Loaded, path: str, name: str) -> str:
    from dockyard.publishing.manifest import Problem

    file = _inside(loaded.folder, name)
    if file is None:
        loaded.problems.append(Problem(path, f"{name!r} is outside the manifest's folder"))
    elif not file.is_file():
        loaded.problems.append(Problem(path, f"file {name!r} not found beside {MANIFEST_FILE}"))
    else:
        try:
            return file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            loaded.problems.append(Problem(path, f"file {name!r} is not UTF-8 text"))
    return ""


def _read_image(loaded: Loaded, path: str, name: str, *, logo: bool) -> None:
    from dockyard.publishing.manifest import Problem

    file = _inside(loaded.folder, name)
    if file is None:
        loaded.problems.append(Problem(path, f"{name!r} is outside the manifest's folder"))
        return
    if not file.is_file():
        loaded.problems.append(Problem(path, f"file {name!r} not found beside {MANIFEST_FILE}"))
        return
    from dockyard.publishing import imaging

    data = file.read_bytes()
    problem = _image_problem("logo" if logo else "screenshot", data)
    if problem is not None:
        loaded.problems.append(Problem(path, f"{name!r}: {problem}"))
    else:
        loaded.images[path] = (data, imaging.MEDIA_TYPES[imaging.sniff(data) or ""])


def _image_problem(kind: str, data: bytes) -> str | None:
    """What the server would refuse in this image, by the server's own checks (``publishing.imaging``:
    the formats, the size limit, the logo's and screenshots' dimensions, bombs), so the limits cannot
    drift apart; None when it would be accepted."""
    from dockyard.errors import DockyardError
    from dockyard.publishing import imaging

    try:
        imaging.process(kind, data)
    except DockyardError as exc:
        return exc.message
    return None


def check(loaded: Loaded, *, complete: bool) -> list[Problem]:
    """Every problem of a loaded manifest: its files, its fields and (``complete``) what submitting needs."""
    from dockyard.publishing.manifest import ManifestInvalid, parse_manifest, submission_problems

    problems = list(loaded.problems)
    if not loaded.data and problems:
        return problems
    try:
        manifest = parse_manifest(loaded.data)
    except ManifestInvalid as exc:
        return problems + exc.problems
    if complete:
        seen = {p.path for p in problems}
        problems += [p for p in submission_problems(manifest) if p.path not in seen]
    return problems


def _fail(lines: list[str], code: int = 2) -> None:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(code)


@product_app.command("validate")
def validate(
    target: Path = typer.Argument(..., help=f"a folder holding {MANIFEST_FILE}, or the file itself"),
    draft: bool = typer.Option(
        False,
        "--draft",
        help="check only the form of the fields (a draft may be incomplete), not what submitting needs",
    ),
) -> None:
    """Check a product manifest offline: exit 0 and "ok", or 2 with one line per problem."""
    problems = check(load(target), complete=not draft)
    if problems:
        _fail([str(p) for p in problems])
    typer.echo("ok")


@product_app.command("push")
def push(
    target: Path = typer.Argument(..., help=f"a folder holding {MANIFEST_FILE}, or the file itself"),
    server: str = typer.Option(..., "--server", help="the dockyard server, e.g. https://store.example"),
    token: str = typer.Option(
        None,
        "--token",
        envvar="DOCKYARD_TOKEN",
        help="an access token with the api scope (default: $DOCKYARD_TOKEN)",
        show_envvar=False,
    ),
    submit: bool = typer.Option(False, "--submit", help="submit the draft for review once saved"),
) -> None:
    """Upload the images and create or update the product's draft (and submit it with --submit)."""
    loaded = load(target)
    problems = check(loaded, complete=submit)
    org = loaded.data.get("publisher")
    if not problems and not (isinstance(org, str) and org):
        from dockyard.publishing.manifest import Problem

        problems = [Problem("publisher", "is required to push: the organisation the product belongs to")]
    if problems:
        _fail([str(p) for p in problems])
    if not token:
        _fail(["error: give an access token with the api scope (--token or DOCKYARD_TOKEN)"])
    _push(loaded, str(org), server.rstrip("/"), token, submit=submit)


def _push(loaded: Loaded, org: str, server: str, token: str, *, submit: bool) -> None:
    import httpx

    data = dict(loaded.data)
    slug = str(data.get("slug"))
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "dockyard-product-push"}
    with httpx.Client(base_url=f"{server}/api/v1", headers=headers, timeout=60) as api:
        try:
            ids = {path: _upload(api, org, path, body, kind) for path, (body, kind) in loaded.images.items()}
            if "logo" in ids:
                data["logo"] = ids["logo"]
            if isinstance(data.get("screenshots"), list):
                data["screenshots"] = [
                    ids.get(f"screenshots[{i}]", s) for i, s in enumerate(data["screenshots"])
                ]
            found = api.get(f"/publishers/{org}/products/{slug}")
            if found.status_code == 404:
                saved = _answer(api.post(f"/publishers/{org}/products", json=data))
            else:
                _answer(found)
                saved = _answer(api.put(f"/publishers/{org}/products/{slug}", json=data))
            for problem in saved.get("problems", []):
                typer.echo(
                    f"warning: {problem['field']}: {problem['message']}".replace(": : ", ": "), err=True
                )
            revision = saved["working"]
            typer.echo(f"{org}/{slug}: revision {revision['number']} saved ({revision['state']})")
            if submit:
                submitted = _answer(api.post(f"/publishers/{org}/products/{slug}/submit"))
                state = (submitted.get("working") or submitted).get("state", "submitted")
                typer.echo(f"{org}/{slug}: revision {revision['number']} {state}")
        except httpx.HTTPError as exc:
            _fail([f"error: {server}: {exc}"], 1)


def _upload(api: Any, org: str, path: str, body: bytes, media: str) -> int:
    """Upload one image to the publisher's catalogue (POST /publishers/{org}/images): its id."""
    kind = "logo" if path == "logo" else "screenshot"
    answer = api.post(
        f"/publishers/{org}/images", params={"kind": kind}, content=body, headers={"Content-Type": media}
    )
    return int(_answer(answer)["id"])


def _answer(response: Any) -> dict[str, Any]:
    """The JSON of a successful answer; else the API's error envelope printed, a line per field, and exit 2
    for a refused manifest (400, 409), 1 for anything else."""
    if response.is_success:
        return dict(response.json())
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    detail = error.get("detail")
    lines = []
    if isinstance(detail, list) and detail and all(isinstance(d, dict) and "message" in d for d in detail):
        lines = [f"{d['field']}: {d['message']}" if d.get("field") else str(d["message"]) for d in detail]
    else:
        message = error.get("message") or response.reason_phrase
        lines = [
            f"error: {response.request.method} {response.request.url.path}: {response.status_code} {message}"
        ]
    _fail(lines, 2 if response.status_code in (400, 409) else 1)
    raise AssertionError  # pragma: no cover - _fail exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(product_app())
