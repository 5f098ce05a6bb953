"""`dockyard product validate` on folders built here (exit codes and the exact lines), and `push` against a
live server with an access token."""

from __future__ import annotations

import io
import re
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image
from tests.support.cli import Cli
from tests.support.pages import sign_in
from tests.support.pictures import png_bomb
from tests.support.registry_client import RegistryClient

from dockyard.publishing.agreement import AGREEMENT_VERSION
from dockyard.publishing.imaging import MAX_UPLOAD_BYTES

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
        "logo: 'logo.png': the logo must be at least 512x512: it is 511x511",
        "screenshots[0]: 'shots/console.png': GIF images are not accepted: upload the screenshot as PNG, "
        "JPEG or WebP",
    ]


@pytest.mark.parametrize(
    ("logo", "shot", "expected"),
    [
        # The server's limits, each just past: publishing.imaging's messages, not a copy of them.
        (png(512, 513), None, "logo: 'logo.png': the logo must be square: it is 512x513"),
        (png(4097, 4097), None, "logo: 'logo.png': the logo must be at most 4096x4096: it is 4097x4097"),
        (
            None,
            png(639, 360),
            "screenshots[0]: 'shots/console.png': the screenshot must be at least 640x360: it is 639x360",
        ),
        (
            None,
            png(3841, 2160),
            "screenshots[0]: 'shots/console.png': the screenshot must be at most 3840x2160: it is 3841x2160",
        ),
        (
            None,
            png_bomb(),
            "screenshots[0]: 'shots/console.png': the screenshot declares far too many "
            "pixels: at most 3840x2160",
        ),
        (
            b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
            None,
            "logo: 'logo.png': the logo could not be read: the file is damaged or incomplete",
        ),
    ],
    ids=["logo-not-square", "logo-too-large", "shot-too-small", "shot-too-large", "png-bomb", "damaged"],
)
def test_images_are_checked_by_the_servers_rules(
    cli: Cli, tmp_path: Path, logo: bytes | None, shot: bytes | None, expected: str
) -> None:
    root = folder(tmp_path)
    if logo is not None:
        (root / "logo.png").write_bytes(logo)
    if shot is not None:
        (root / "shots" / "console.png").write_bytes(shot)
    result = cli("product", "validate", root)
    assert (result.exit_code, result.stderr.splitlines()) == (2, [expected])


def test_an_image_over_the_size_limit(cli: Cli, tmp_path: Path) -> None:
    root = folder(tmp_path)
    # A valid PNG padded past 5 MB with a private chunk: refused for its size alone, as the server does.
    padding = b"\0" * (MAX_UPLOAD_BYTES + 1)
    chunk = len(padding).to_bytes(4, "big") + b"prVt" + padding + b"\0\0\0\0"
    logo = png(512, 512)
    (root / "logo.png").write_bytes(logo[:33] + chunk + logo[33:])
    result = cli("product", "validate", root)
    assert result.exit_code == 2
    assert result.stderr == "logo: 'logo.png': the logo is 5 MB: at most 5 MB is accepted\n"


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


# A whole-system run (a server, the CLI): its database work runs on PostgreSQL in test_products_api.py.
@pytest.mark.sqlite_only
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


# A whole-system run (a server, the CLI): its database work runs on PostgreSQL in test_products_api.py.
@pytest.mark.sqlite_only
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


# -- push with its images and --submit, against a live server ----------------------------------------------
def _api(live_server, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{live_server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _publisher_world(live_server, tmp_path: Path) -> str:
    """acme, owned by pub, with the example's two images pushed to its (private) repositories; the
    owner's api token."""
    live_server.dockyard("user", "create", "pub", "--password", "publisher-pass-1")
    live_server.dockyard("org", "create", "acme", "pub")
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        registry = RegistryClient(http, "pub", "publisher-pass-1")
        registry.push_image("acme/db-server", "16.2")
        registry.push_image("acme/db-server", "16", layers=[b"layer-16.2"])
        registry.push_image("acme/db-agent", "1.4")
    return live_server.dockyard("user", "token", "pub", "--scope", "api").stdout.strip()


def _complete_profile(live_server, api: httpx.Client) -> None:
    """Every field, a logo, the agreement, and the company email confirmed by the mailed link."""
    logo = api.post(
        "/publishers/acme/images", params={"kind": "logo"}, content=png(512, 512),
        headers={"Content-Type": "image/png"},
    )  # fmt: skip
    assert logo.status_code == 201, logo.text
    fields = {
        "legal_name": "Acme Corp",
        "website": "https://acme.example",
        "phone": "+44 20 7946 0958",
        "email": "store@acme.example",
        "story": "We make databases.",
        "logo_id": logo.json()["id"],
    }
    assert api.put("/publishers/acme", json=fields).status_code == 200
    agreement = api.post("/publishers/acme/agreement", json={"version": AGREEMENT_VERSION})
    assert agreement.status_code == 200, agreement.text
    token = None
    deadline = time.monotonic() + 20
    while token is None and time.monotonic() < deadline:  # mail goes out after the commit, to DATA_DIR/mail
        for eml in (live_server.data_dir / "mail").glob("*.eml"):
            message = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
            body = message.get_body(("plain",))
            found = re.search(r"[?&]token=([A-Za-z0-9_\-]+)", body.get_content() if body else "")
            token = found.group(1) if found else None
        time.sleep(0.2)
    assert token, "no confirmation link was mailed to the company address"
    assert api.post("/publishers/email/verify", json={"token": token}).status_code == 200
    assert api.get("/publishers/acme").json()["complete"] is True


# A whole-system run (a server, the CLI): its database work runs on PostgreSQL in test_products_api.py.
@pytest.mark.sqlite_only
def test_push_a_full_folder_and_submit(live_server, tmp_path: Path) -> None:
    token = _publisher_world(live_server, tmp_path)
    with _api(live_server, token) as api:
        _complete_profile(live_server, api)
        root = folder(tmp_path)
        (root / "shots" / "editor.png").write_bytes(png(1920, 1080))
        text = EXAMPLE.replace(
            "screenshots: [shots/console.png]", "screenshots: [shots/console.png, shots/editor.png]"
        )
        (root / "dockyard-product.yaml").write_text(text)
        cli = Cli(tmp_path / "cli-data", "sqlite://", extra_env={"DOCKYARD_TOKEN": token})

        result = cli("product", "push", root, "--server", live_server.url, "--submit")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.splitlines() == [
            "acme/acme-db: revision 1 saved (draft)",
            "acme/acme-db: revision 1 submitted",
        ]
        assert result.stderr == ""

        product = api.get("/publishers/acme/products/acme-db").json()
        revision = product["working"]
        assert revision["state"] == "submitted"
        manifest = revision["manifest"]
        logo, shots = manifest["logo"], manifest["screenshots"]
        assert isinstance(logo, int) and len(shots) == 2 and all(isinstance(i, int) for i in shots)
        assert len({logo, *shots}) == 3
        # Each id is an image of the catalogue, of its kind, in the renditions the server made of the files
        # (seen by the publisher's members only until a revision using them is published).
        with httpx.Client(base_url=live_server.url, timeout=30) as http:
            assert http.get(f"/catalog-images/{logo}/512").status_code == 404
            assert sign_in(http, "pub", "publisher-pass-1").status_code == 303
            got = http.get(f"/catalog-images/{logo}/512")
            assert got.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(got.content)).size == (512, 512)
            for shot, size in zip(shots, [(1280, 800), (1920, 1080)], strict=True):
                got = http.get(f"/catalog-images/{shot}/full")
                assert got.headers["content-type"] == "image/webp"
                assert Image.open(io.BytesIO(got.content)).size == size
            assert http.get(f"/catalog-images/{logo}/full").status_code == 404  # a logo has no "full"
        # The review thread's history has the submission, by the token's owner.
        history = api.get("/publishers/acme/products/acme-db/thread").json()["history"]
        assert [(h["from_state"], h["to_state"], h["actor"]) for h in history] == [
            ("draft", "submitted", "pub")
        ]


# A whole-system run (a server, the CLI): its database work runs on PostgreSQL in test_products_api.py.
@pytest.mark.sqlite_only
def test_push_submit_refused_with_a_line_per_problem(live_server, tmp_path: Path) -> None:
    token = _publisher_world(live_server, tmp_path)
    with _api(live_server, token) as api:
        # Half a profile: the name and website only.
        fields = {"legal_name": "Acme Corp", "website": "https://acme.example"}
        assert api.put("/publishers/acme", json=fields).status_code == 200
        cli = Cli(tmp_path / "cli-data", "sqlite://", extra_env={"DOCKYARD_TOKEN": token})
        result = cli("product", "push", folder(tmp_path), "--server", live_server.url, "--submit")
        assert result.exit_code == 2
        assert result.stdout == "acme/acme-db: revision 1 saved (draft)\n"
        assert result.stderr.splitlines() == [
            "publisher.phone: Add a company phone number.",
            "publisher.email: Add a company email address.",
            "publisher.logo: Upload the company logo.",
            "publisher.story: Tell the company's story.",
            f"publisher.agreement: Accept the publisher agreement (version {AGREEMENT_VERSION}).",
        ]
        # The draft is saved, with its images uploaded, and was not submitted.
        revision = api.get("/publishers/acme/products/acme-db").json()["working"]
        assert revision["state"] == "draft" and isinstance(revision["manifest"]["logo"], int)
