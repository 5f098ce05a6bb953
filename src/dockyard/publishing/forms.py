"""The product editor's form, both ways: posted fields -> a manifest mapping (for ``parse_manifest``, so the
page reports the same field paths as the API and the CLI), and a manifest -> the rows the form shows.

Fields are named by their manifest path (``tiers[1].price.currency``), so a problem's path is the name of
the input it belongs beside. Image and tier rows come in a fixed number (the ones in use and two blank
ones): rows left blank are dropped, and the rest renumbered, before the manifest is checked, and the form is
shown again from the checked rows, so each message still sits beside its row.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from dockyard.publishing.manifest import MAX_IMAGES, MAX_TIERS, Compatibility

BLANK_ROWS = 2
LIMIT = 100_000  # the longest a field may be (Markdown); the manifest's own limits are checked after


def _text(data: FormData, name: str, limit: int = 2048) -> str:
    value = data.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _list(value: str) -> list[str]:
    """ "a, b c" -> ["a", "b", "c"] (commas or spaces between items)."""
    return [item for item in value.replace(",", " ").split() if item]


def _int_or_text(value: str) -> int | str | None:
    if not value:
        return None
    return int(value) if value.isdigit() and len(value) < 12 else value


def manifest_from_form(data: FormData, *, slug: str | None = None) -> dict[str, Any]:
    """The manifest the form describes (``slug``: the product's, fixed once it exists)."""
    manifest: dict[str, Any] = {
        "name": _text(data, "name", 200),
        "slug": slug if slug is not None else _text(data, "slug", 100),
        "short_description": _text(data, "short_description", 1000),
        "tags": _list(_text(data, "tags", 1000)),
        "long_description": _text(data, "long_description", LIMIT),
        "install": _text(data, "install", LIMIT),
        "allow_public_repositories": _text(data, "allow_public_repositories") == "on",
        "logo": _int_or_text(_text(data, "logo", 20)),
        "screenshots": [int(v) for v in data.getlist("screenshots") if isinstance(v, str) and v.isdigit()][
            :20
        ],
    }
    for name in ("category", "compatibility", "license_url"):
        manifest[name] = _text(data, name) or None
    support: dict[str, Any] = {
        "url": _text(data, "support.url") or None,
        "email": _text(data, "support.email", 320) or None,
        "resources": [
            line.strip() for line in _text(data, "support.resources", 20_000).splitlines() if line.strip()
        ],
    }
    hours, response = _text(data, "support.sla.hours", 200), _text(data, "support.sla.response", 200)
    if hours or response:
        support["sla"] = {"hours": hours, "response": response}
    manifest["support"] = support if any(support.values()) else None
    manifest["images"] = [row for row in (_image(data, i) for i in range(MAX_IMAGES + BLANK_ROWS)) if row]
    manifest["tiers"] = [row for row in (_tier(data, i) for i in range(MAX_TIERS + BLANK_ROWS)) if row]
    return manifest


def _image(data: FormData, i: int) -> dict[str, Any] | None:
    row = {
        "name": _text(data, f"images[{i}].name", 100),
        "repository": _text(data, f"images[{i}].repository", 300),
        "tags": _list(_text(data, f"images[{i}].tags", 3000)),
    }
    return row if any(row.values()) else None


def _tier(data: FormData, i: int) -> dict[str, Any] | None:
    p = f"tiers[{i}]"
    row: dict[str, Any] = {
        "name": _text(data, f"{p}.name", 200),
        "description": _text(data, f"{p}.description", 2000),
        "images": _list(_text(data, f"{p}.images", 1000)),
    }
    anonymous = _text(data, f"{p}.anonymous_pulls") == "on"
    amount = _text(data, f"{p}.price.amount", 20)
    if not any(row.values()) and not amount:
        return None
    if _text(data, f"{p}.price") == "paid":
        row["price"] = {
            "amount": _int_or_text(amount.replace(" ", "")),
            "currency": _text(data, f"{p}.price.currency", 10).upper(),
            "period": _text(data, f"{p}.price.period", 20),
        }
    else:
        row["price"] = "free"
    if anonymous:
        row["anonymous_pulls"] = True
    return row


def form_rows(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the form shows of a manifest: every field with a default, rows padded with blank ones."""
    support = manifest.get("support") or {}
    sla = support.get("sla") or {}
    images = [dict(row) for row in manifest.get("images") or [] if isinstance(row, dict)]
    tiers = []
    for row in manifest.get("tiers") or []:
        if not isinstance(row, dict):
            continue
        price = row.get("price")
        paid = isinstance(price, dict)
        tiers.append(
            {
                "name": row.get("name") or "",
                "description": row.get("description") or "",
                "images": ", ".join(map(str, row.get("images") or [])),
                "paid": paid,
                "amount": price.get("amount", "") if paid else "",
                "currency": price.get("currency", "") if paid else "",
                "period": price.get("period", "month") if paid else "month",
                "anonymous_pulls": bool(row.get("anonymous_pulls")),
            }
        )
    blank_tier = {
        "name": "",
        "description": "",
        "images": "",
        "paid": False,
        "amount": "",
        "currency": "",
        "period": "month",
        "anonymous_pulls": False,
    }
    return {
        "name": manifest.get("name") or "",
        "slug": manifest.get("slug") or "",
        "short_description": manifest.get("short_description") or "",
        "category": manifest.get("category") or "",
        "tags": ", ".join(map(str, manifest.get("tags") or [])),
        "long_description": manifest.get("long_description") or "",
        "install": manifest.get("install") or "",
        "license_url": manifest.get("license_url") or "",
        "compatibility": manifest.get("compatibility") or "",
        "allow_public_repositories": bool(manifest.get("allow_public_repositories")),
        "logo": manifest.get("logo"),
        "screenshots": list(manifest.get("screenshots") or []),
        "support_url": support.get("url") or "",
        "support_email": support.get("email") or "",
        "support_resources": "\n".join(support.get("resources") or []),
        "sla_hours": sla.get("hours") or "",
        "sla_response": sla.get("response") or "",
        "images": [
            {
                "name": r.get("name") or "",
                "repository": r.get("repository") or "",
                "tags": ", ".join(r.get("tags") or []),
            }
            for r in images
        ][:MAX_IMAGES]
        + [{"name": "", "repository": "", "tags": ""}] * BLANK_ROWS,
        "tiers": tiers[:MAX_TIERS] + [dict(blank_tier) for _ in range(BLANK_ROWS)],
        "compatibilities": [c.value for c in Compatibility],
    }
