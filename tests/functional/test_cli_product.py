"""`dockyard product validate` on folders built here (exit codes and the exact lines), and `push` against a
live server with an access token."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image
from tests.support.cli import Cli

EXAMPLE = """\
publisher: acme
name: Acme Database
slug: acme-db
logo: logo.png
short_description: A fast SQL database for containers.
category: Database
tags: [sql, database]
long_description: README.md
screenshots: [shots/console.png]
support: {url: "https://acme.example/support", email: support@acme.example, resources: ["https://acme.example/docs"], sla: {hours: "24x7", response: "4 hours"}}
compatibility: enterprise
images:
  - {name: server, repository: acme/db-server, tags: ["16.2", "16"]}
  - {name: agent, repository: acme/db-agent, tags: ["1.4"]}
tiers:
  - {name: Community, description: Single node, price: free, images: [server]}
  - {name: Enterprise, description: Cluster and agent, price: {amount: 4900, currency: USD, period: month}, images: [server, agent]}
install: INSTALL.md
license_url: https://acme.example/eula
"""  # noqa: E501 - the issue's example, as written


def png(width: int, height: int, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 160)).save(out, fmt)
    return out.getvalue()


def folder(tmp_path: Path, text: str = EXAMPLE) -> Path:
    """A product folder: ``text`` as its dockyard-product.yaml and the example's files (a 512x512 logo, a
    screenshot, README.md, INSTALL.md)."""
    root = tmp_path / "product"
    files: dict[str, bytes | str] = {
        "logo.png": png(512, 512),
        "shots/console.png": png(1280, 800),
        "README.md": "# Acme DB\n\nFast.\n",
        "INSTALL.md": "docker run acme/db-server:16\n",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (root / "dockyard-product.yaml").write_text(text)
    return root


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    return Cli(tmp_path / "data", database_url)


def test_the_issues_example_is_ok(cli: Cli, tmp_path: Path) -> None:
    root = folder(tmp_path)
    for target in (root, root / "dockyard-product.yaml"):
        result = cli("product", "validate", target)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "ok\n", "")


def test_field_problems_one_line_each(cli: Cli, tmp_path: Path) -> None:
    text = EXAMPLE.replace("currency: USD", "currency: USX").replace("slug: acme-db", "slug: Acme DB")
    result = cli("product", "validate", folder(tmp_path, text))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "slug: 'Acme DB' is not a slug: 1 to 64 lowercase letters, digits and hyphens, not starting or "
        "ending with one",
        "tiers[1].price.currency: 'USX' is not an ISO 4217 code",
    ]


def test_missing_and_bad_files_are_problems(cli: Cli, tmp_path: Path) -> None:
    root = folder(tmp_path)
    (root / "logo.png").write_bytes(png(511, 511))
    (root / "README.md").unlink()
    (root / "shots" / "console.png").write_bytes(b"GIF89a not this")
    result = cli("product", "validate", root)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "long_description: file 'README.md' not found beside dockyard-product.yaml",
        "logo: 'logo.png' is 511x511: a logo is square, at least 512x512",
        "screenshots[0]: 'shots/console.png' is not a PNG, JPEG or WebP image",
    ]


def test_a_missing_logo_file_and_an_escaping_path(cli: Cli, tmp_path: Path) -> None:
    root = folder(tmp_path, EXAMPLE.replace("install: INSTALL.md", "install: ../../secret.md"))
    (root / "logo.png").unlink()
    result = cli("product", "validate", root)
    assert result.stderr.splitlines() == [
        "install: '../../secret.md' is outside the manifest's folder",
        "logo: file 'logo.png' not found beside dockyard-product.yaml",
    ]


def test_incomplete_is_a_problem_unless_draft(cli: Cli, tmp_path: Path) -> None:
    root = folder(tmp_path, "publisher: acme\nname: Acme\nslug: acme\ncompatibility: none\n")
    result = cli("product", "validate", root)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "logo: is required before submitting"
    assert lines[-1].startswith("compatibility: 'none' cannot be submitted: Products must be compatible")
    result = cli("product", "validate", "--draft", root)
    assert (result.exit_code, result.stdout) == (0, "ok\n")


def test_not_yaml_and_no_file(cli: Cli, tmp_path: Path) -> None:
    result = cli("product", "validate", folder(tmp_path, "name: [unclosed\n"))
    assert (result.exit_code, result.stderr) == (2, "dockyard-product.yaml is not valid YAML (line 2)\n")
    result = cli("product", "validate", tmp_path / "nowhere")
    assert result.exit_code == 2 and result.stderr.endswith("/nowhere: no such file\n")


def test_jpeg_and_webp_pass_the_magic_check(cli: Cli, tmp_path: Path) -> None:
    root = folder(tmp_path)
    (root / "logo.png").write_bytes(png(600, 600, "JPEG"))
    (root / "shots" / "console.png").write_bytes(png(800, 600, "WEBP"))
    assert cli("product", "validate", root).exit_code == 0


# -- push, against a live server ---------------------------------------------------------------------------
DRAFT = """\
publisher: acme
name: Acme Database
slug: acme-db
short_description: A fast SQL database for containers.
category: Database
long_description: README.md
compatibility: community
images:
  - {name: server, repository: acme/db-server, tags: ["16"]}
tiers:
  - {name: Community, price: free, images: [server]}
install: INSTALL.md
"""


def test_push_creates_then_updates_the_draft(live_server, tmp_path: Path) -> None:
    live_server.dockyard("user", "create", "pub", "--password", "publisher-pass-1")
    live_server.dockyard("org", "create", "acme", "pub")
    token = live_server.dockyard("user", "token", "pub", "--scope", "api").stdout.strip()
    root = folder(tmp_path, DRAFT)
    cli = Cli(tmp_path / "cli-data", "sqlite://", extra_env={"DOCKYARD_TOKEN": token})

    result = cli("product", "push", root, "--server", live_server.url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "acme/acme-db: revision 1 saved (draft)\n"
    # Saved with what submitting would still refuse, as warnings (the repository is not pushed yet).
    warnings = result.stderr.splitlines()
    assert (
        "warning: images[0].repository: 'acme/db-server' does not exist: push the image to it first"
        in warnings
    )
    assert "warning: logo: is required before submitting" in warnings

    (root / "README.md").write_text("# Acme DB\n\nFaster now.\n")
    result = cli("product", "push", root, "--server", live_server.url)
    assert result.stdout == "acme/acme-db: revision 1 saved (draft)\n"
    got = httpx.get(
        f"{live_server.url}/api/v1/publishers/acme/products/acme-db",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert got["working"]["manifest"]["long_description"] == "# Acme DB\n\nFaster now."
    assert got["working"]["manifest"]["install"] == "docker run acme/db-server:16"


def test_push_refusals(live_server, tmp_path: Path) -> None:
    live_server.dockyard("user", "create", "pub", "--password", "publisher-pass-1")
    live_server.dockyard("user", "create", "other", "--password", "publisher-pass-1")
    live_server.dockyard("org", "create", "acme", "pub")
    other = live_server.dockyard("user", "token", "other", "--scope", "api").stdout.strip()
    root = folder(tmp_path, DRAFT)
    cli = Cli(tmp_path / "cli-data", "sqlite://")

    result = cli("product", "push", root, "--server", live_server.url)
    assert (result.exit_code, result.stderr) == (
        2,
        "error: give an access token with the api scope (--token or DOCKYARD_TOKEN)\n",
    )
    # Someone outside the organisation learns nothing of it.
    result = cli("product", "push", root, "--server", live_server.url, "--token", other)
    assert result.exit_code == 1
    assert (
        result.stderr == "error: POST /api/v1/publishers/acme/products: 404 organisation 'acme' not found\n"
    )
    # An invalid manifest never reaches the server.
    bad = folder(
        tmp_path / "bad", DRAFT.replace("price: free", "price: {amount: 5, currency: USX, period: month}")
    )
    result = cli("product", "push", bad, "--server", live_server.url, "--token", other)
    assert (result.exit_code, result.stderr) == (
        2,
        "tiers[0].price.currency: 'USX' is not an ISO 4217 code\n",
    )
    assert yaml.safe_load((bad / "dockyard-product.yaml").read_text())["publisher"] == "acme"
