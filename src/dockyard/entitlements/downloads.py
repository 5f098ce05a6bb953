"""Download events: every manifest GET on a store path, written off the pull path in batches (the same
``BatchWriter`` as pull events). Which entitlement a pull used is looked up when the batch is written, not
in the request; each batch also adds its downloads to the products' listings (``listing.downloads``).

Every GET is an event (the raw facts of the publishers' reports), but the listing's count is of customers'
pulls only: one per pull (the tag, or a pinned digest; not the platform manifest a client fetches after an
index), by an entitled customer or anonymously, never by the publisher's own people or the store team, so
that nobody moves a product up "most downloaded" by pulling it themselves."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dockyard.db import utcnow
from dockyard.entitlements.models import DownloadEvent, Entitlement, EntitlementKind, EntitlementStatus
from dockyard.entitlements.store import LiveRevision
from dockyard.registry.pulls import BatchWriter
from dockyard.store.models import Listing

USER_AGENT_MAX = 512


def download_row(
    live: LiveRevision,
    image: str,
    tag: str | None,
    digest: str,
    user_id: int | None,
    user_agent: str,
) -> dict[str, Any]:
    """A queued download: the facts of the request, and the tiers that include the image (the entitlement
    is resolved from them when written)."""
    tiers = live.tiers_with(image)
    return {
        "product_id": live.product_id,
        "publisher_id": live.publisher_id,
        "user_id": user_id,
        "image": image,
        "tag": tag,
        "digest": digest,
        "user_agent": (user_agent or "")[:USER_AGENT_MAX],
        "at": utcnow(),
        "_tiers": [t.name for t in tiers],
        # One pull, not one of the platform manifests a client fetches after the index it pulled.
        "_whole_pull": tag is not None or digest in live.pins[image].tags.values(),
        "_anonymous": next((t.name for t in tiers if t.anonymous), None),
    }


def write_downloads(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert download events (each with the entitlement it was pulled under, if any) and count them into
    the products' listings (a product without a listing row yet is simply not counted)."""
    found: dict[tuple[int, int], list[tuple[int, str, str]]] = {}
    events, counted = [], []
    for row in rows:
        tiers, anonymous = row["_tiers"], row["_anonymous"]
        entitlement: tuple[int, str, str] | None = None
        if row["user_id"] is not None and tiers:
            key = (row["user_id"], row["product_id"])
            if key not in found:
                found[key] = [
                    (r.id, r.tier, r.kind)
                    for r in session.execute(
                        select(Entitlement.id, Entitlement.tier, Entitlement.kind).where(
                            Entitlement.user_id == row["user_id"],
                            Entitlement.product_id == row["product_id"],
                            Entitlement.status == EntitlementStatus.ACTIVE.value,
                        )
                    )
                ]
            entitlement = next((e for e in found[key] if e[1] in tiers), None)
        event = {k: v for k, v in row.items() if not k.startswith("_")}
        if entitlement is not None:
            event.update(
                entitlement_id=entitlement[0],
                tier=entitlement[1],
                paid=entitlement[2] == EntitlementKind.PAID.value,
            )
        else:  # the publisher's people or the store team; or an anonymous pull of a tier that allows it
            event.update(entitlement_id=None, tier=anonymous if row["user_id"] is None else None, paid=False)
        events.append(event)
        if row["_whole_pull"] and (entitlement is not None or row["user_id"] is None):
            counted.append(row["product_id"])
    session.execute(DownloadEvent.__table__.insert(), events)
    for product_id, count in Counter(counted).items():
        session.execute(
            update(Listing)
            .where(Listing.product_id == product_id)
            .values(downloads=Listing.downloads + count)
            .execution_options(synchronize_session=False)
        )


class DownloadRecorder(BatchWriter):
    """Store download events, written every ``interval`` seconds."""

    name = "download-recorder"

    def write(self, session: Session, rows: list[dict[str, Any]]) -> None:
        write_downloads(session, rows)
