"""Customers pull at the store path with skopeo and podman (vfs storage) against a live dockyard: entitled,
not entitled (refused as a missing repository is), revoked, unpublished (404), digest pinning (a later
push to the staging tag changes nothing a customer gets), and anonymous pulls only where the tier allows.

The product is put on the store as publishing leaves it (a published revision with its pins, the live
revision of its product), written as rows: the review that gets it there is tested on its own."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace
from dockyard.entitlements.models import DownloadEvent
from dockyard.publishing.models import Product, ProductRevision, Publisher
from tests.e2e.clients import require_tools
from tests.support.review_world import make_product, make_publisher

require_tools("skopeo", "podman", "umoci")
pytestmark = pytest.mark.e2e

SLUG = "acme-db"


def put_on_store(server, org: str, pins: dict, *, anonymous: bool = False) -> None:
    engine = create_engine(server.live.database_url)
    try:
        with Session(engine) as s, s.begin():
            publisher = make_publisher(s, org)
            revision = make_product(s, publisher, org, SLUG)
            manifest = dict(revision.manifest)
            manifest["tiers"] = [dict(t) for t in manifest["tiers"]]
            manifest["tiers"][0]["anonymous_pulls"] = anonymous
            revision.manifest, revision.state, revision.pins = manifest, "published", pins
            product = s.get(Product, revision.product_id)
            product.live_revision_id, product.working_revision_id = revision.id, None
    finally:
        engine.dispose()


def set_live(server, org: str, live: bool) -> None:
    engine = create_engine(server.live.database_url)
    try:
        with Session(engine) as s, s.begin():
            product = s.scalars(
                select(Product)
                .join(Publisher, Publisher.id == Product.publisher_id)
                .join(Namespace, Namespace.id == Publisher.namespace_id)
                .where(Product.slug == SLUG, Namespace.name == org)
            ).one()
            revision = s.scalars(
                select(ProductRevision).where(ProductRevision.product_id == product.id)
            ).one()
            product.live_revision_id = revision.id if live else None
    finally:
        engine.dispose()


def downloads(server) -> list[DownloadEvent]:
    engine = create_engine(server.live.database_url)
    try:
        with Session(engine) as s:
            rows = list(s.scalars(select(DownloadEvent).order_by(DownloadEvent.id)))
            s.expunge_all()
            return rows
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def store(server, tmp_path_factory, images):
    """An organisation whose server and agent images are pushed and pinned, on the store; a customer."""
    from tests.e2e.clients import Clients

    owner, customer, outsider = server.user("olga"), server.user("carl"), server.user("otto")
    regular = server.user("cleo")  # a customer whose entitlement nobody revokes
    server.org("acme", owner)
    clients = Clients(tmp_path_factory.mktemp("store-setup"))
    try:
        server_image, agent_image = images.image("store-server"), images.image("store-agent")
        clients.copy(server_image.oci, server.ref("acme/db-server:16"), dest_creds=owner.creds)
        clients.copy(agent_image.oci, server.ref("acme/db-agent:1.4"), dest_creds=owner.creds)
    finally:
        clients.close()
    pins = {
        "server": {"repository": "acme/db-server", "tags": {"16": server_image.digest}},
        "agent": {"repository": "acme/db-agent", "tags": {"1.4": agent_image.digest}},
    }
    put_on_store(server, "acme", pins)
    return {
        "owner": owner,
        "customer": customer,
        "outsider": outsider,
        "regular": regular,
        "server": server_image,
    }


def untimed(stderr: str) -> str:
    """skopeo's message without its timestamp (the two commands may run a second apart)."""
    return re.sub(r'time="[^"]*"', "", stderr)


ENTITLEMENT = {"publisher": "acme", "product": SLUG, "tier": "Community", "accept_license": True}


def entitle(server, account) -> int:
    return server.api("POST", "/entitlements", account, ENTITLEMENT)["id"]


def test_customers_pull_at_the_store_path_with_skopeo_and_podman(server, store, clients, oci_dir) -> None:
    customer, outsider, image = store["customer"], store["outsider"], store["server"]
    ref = server.ref(f"store/acme/{SLUG}/server:16")
    missing = server.ref(f"store/acme/{SLUG}/nothing:16")
    # Not entitled: refused exactly as a repository that does not exist.
    for account in (customer, outsider):
        refused = clients.inspect(ref, account.creds, check=False)
        like_missing = clients.inspect(missing, account.creds, check=False)
        assert refused.returncode != 0 and like_missing.returncode != 0
        assert untimed(refused.stderr).replace("server", "X") == untimed(like_missing.stderr).replace(
            "nothing", "X"
        )
    assert clients.inspect(ref, None, check=False).returncode != 0  # anonymous: Community does not allow it
    eid = entitle(server, customer)
    clients.copy(ref, f"oci:{oci_dir('server')}:16", src_creds=customer.creds)
    inspected = clients.inspect_json(ref, customer.creds)
    assert inspected["Digest"] == image.digest
    assert "db-server" not in json.dumps(inspected)
    pulled = clients.podman(
        "pull", "--tls-verify=false", "--creds", customer.creds, ref.removeprefix("docker://")
    )
    image_id = pulled.stdout.strip().splitlines()[-1]
    assert "sha256:" + image_id == image.config_digest
    # The paid tier's image is not the customer's.
    assert clients.inspect(server.ref(f"store/acme/{SLUG}/agent:1.4"), customer.creds, check=False).returncode
    # Download events (skopeo's user agent among them).
    rows = [r for r in downloads(server) if r.entitlement_id == eid]
    assert rows and all((r.tier, r.image, r.digest) == ("Community", "server", image.digest) for r in rows)
    assert any("skopeo" in r.user_agent for r in rows) and any(
        "podman" in r.user_agent.lower() or "containers" in r.user_agent for r in rows
    )
    # Revoked by the publisher's owner: the next pull is refused.
    r = httpx.post(
        f"{server.url}/api/v1/entitlements/{eid}/revoke",
        json={"reason": "abuse"},
        auth=(store["owner"].username, store["owner"].password),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert clients.inspect(ref, customer.creds, check=False).returncode != 0
    # ... and the customer cannot simply get it again.
    again = httpx.post(
        f"{server.url}/api/v1/entitlements",
        json=ENTITLEMENT,
        auth=(customer.username, customer.password),
        timeout=30,
    )
    assert again.status_code == 403, again.text
    assert clients.inspect(ref, customer.creds, check=False).returncode != 0


def test_a_later_push_to_the_staging_tag_changes_nothing_customers_pull(
    server, store, clients, images
) -> None:
    customer, owner, image = store["regular"], store["owner"], store["server"]
    entitle(server, customer)
    newer = images.image("store-server-newer")
    clients.copy(newer.oci, server.ref("acme/db-server:16"), dest_creds=owner.creds)
    assert clients.inspect_json(server.ref("acme/db-server:16"), owner.creds)["Digest"] == newer.digest
    ref = server.ref(f"store/acme/{SLUG}/server:16")
    assert clients.inspect_json(ref, customer.creds)["Digest"] == image.digest
    by_digest = server.ref(f"store/acme/{SLUG}/server@{newer.digest}")
    assert clients.inspect(by_digest, customer.creds, check=False).returncode != 0  # not pinned
    pinned = server.ref(f"store/acme/{SLUG}/server@{image.digest}")
    assert clients.inspect_json(pinned, customer.creds)["Digest"] == image.digest


def test_anonymous_pulls_only_where_the_tier_allows_them(server, store, clients, images) -> None:
    owner = server.user("bea")
    server.org("beta", owner)
    image, agent = images.image("beta-server"), images.image("beta-agent")
    clients.copy(image.oci, server.ref("beta/db-server:16"), dest_creds=owner.creds)
    clients.copy(agent.oci, server.ref("beta/db-agent:1.4"), dest_creds=owner.creds)
    pins = {
        "server": {"repository": "beta/db-server", "tags": {"16": image.digest}},
        "agent": {"repository": "beta/db-agent", "tags": {"1.4": agent.digest}},
    }
    put_on_store(server, "beta", pins, anonymous=True)
    assert clients.inspect_json(server.ref(f"store/beta/{SLUG}/server:16"), None)["Digest"] == image.digest
    clients.podman("pull", "--tls-verify=false", f"{server.host}/store/beta/{SLUG}/server:16")
    # The agent is only in the paid tier: no anonymous pulls of it.
    assert clients.inspect(server.ref(f"store/beta/{SLUG}/agent:1.4"), None, check=False).returncode != 0
    assert any(r.user_id is None and r.tier == "Community" for r in downloads(server))


def test_an_unpublished_product_answers_404(server, store, clients) -> None:
    customer = store["regular"]
    ref = server.ref(f"store/acme/{SLUG}/server:16")
    if clients.inspect(ref, customer.creds, check=False).returncode != 0:  # run alone: not entitled yet
        entitle(server, customer)
    set_live(server, "acme", False)
    try:
        failed = clients.inspect(ref, customer.creds, check=False)
        assert failed.returncode != 0 and "manifest unknown" not in failed.stderr.lower()
        got = server.get_manifest(f"store/acme/{SLUG}/server", "16", customer)
        assert got.status_code == 404 and got.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    finally:
        set_live(server, "acme", True)
    assert clients.inspect_json(ref, customer.creds)["Digest"] == store["server"].digest
