"""A table of bad manifests and the field errors each must give (the same for the API, pages and CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.support.products import manifest

from dockyard.publishing.manifest import ManifestInvalid, parse_manifest, submission_problems

Change = Callable[[dict[str, Any]], Any]


def put(path: str, value: Any) -> Change:
    """A change setting the field at ``path`` ("tiers.1.price.currency"), or removing it (value DROP)."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is DROP:
            del target[last]
        else:
            target[last] = value

    return change


DROP = object()
CATEGORIES = (
    "'Database', 'Networking', 'Business Software', 'Security', 'Monitoring', 'Developer Tools', 'Storage', "
    "'Analytics', 'Operating Systems', 'Programming Languages', 'Machine Learning', 'Web Servers' "
    "or 'Messaging'"
)
SLUG_RULE = "is not a slug: 1 to 64 lowercase letters, digits and hyphens, not starting or ending with one"
PRICE_RULE = "give 'free' or {amount, currency, period}"

BAD: list[tuple[str, list[Change], list[str]]] = [
    ("currency", [put("tiers.1.price.currency", "USX")],
     ["tiers[1].price.currency: 'USX' is not an ISO 4217 code"]),
    ("short description", [put("short_description", "x" * 141)],
     ["short_description: at most 140 characters (141 given)"]),
    ("eleven tags", [put("tags", [f"t{i}" for i in range(11)])], ["tags: at most 10 tags (11 given)"]),
    ("repeated tag", [put("tags", ["sql", "SQL"])], ["tags: tags must be distinct"]),
    ("search tag", [put("tags", ["ok", "Bad Tag!"])],
     ["tags[1]: 'bad tag!' is not a search tag: up to 32 lowercase letters, digits and . + -"]),
    ("slug", [put("slug", "Acme DB")], [f"slug: 'Acme DB' {SLUG_RULE}"]),
    ("licence url", [put("license_url", "ftp://x.example")],
     ["license_url: 'ftp://x.example' is not an http(s) URL"]),
    ("support email", [put("support.email", "nope")], ["support.email: 'nope' is not an email address"]),
    ("support resource", [put("support.resources", ["https://ok.example", "javascript:alert(1)"])],
     ["support.resources[1]: 'javascript:alert(1)' is not an http(s) URL"]),
    ("sla", [put("support.sla", {"hours": "24x7"})], ["support.sla.response: is required"]),
    ("tier names an unknown image", [put("tiers.0.images", ["server", "nope"])],
     ["tiers[0].images[1]: no image is named 'nope'"]),
    ("two images named alike", [put("images.1.name", "server")],
     ["images[1].name: 'server' is used by another image", "tiers[1].images[1]: no image is named 'agent'"]),
    ("two tiers named alike", [put("tiers.1.name", "community")],
     ["tiers[1].name: 'community' is used by another tier"]),
    ("tier without images", [put("tiers.0.images", [])],
     ["tiers[0].images: List should have at least 1 item after validation, not 0"]),
    ("zero price", [put("tiers.1.price.amount", 0)],
     ["tiers[1].price.amount: Input should be greater than 0"]),
    ("amount as text", [put("tiers.1.price.amount", "4900")],
     ["tiers[1].price.amount: Input should be a valid integer"]),
    ("period", [put("tiers.1.price.period", "week")],
     ["tiers[1].price.period: 'week' is not one of 'one-time', 'month' or 'year'"]),
    ("price word", [put("tiers.0.price", "cheap")],
     [f"tiers[0].price: 'cheap' is not a price: {PRICE_RULE}"]),
    ("no price", [put("tiers.0.price", None)], [f"tiers[0].price: {PRICE_RULE}"]),
    ("category", [put("category", "Games")], [f"category: 'Games' is not one of {CATEGORIES}"]),
    ("compatibility", [put("compatibility", "maybe")],
     ["compatibility: 'maybe' is not one of 'enterprise', 'community' or 'none'"]),
    ("unknown field", [put("colour", "red")], ["colour: is not a field of the manifest"]),
    ("no name", [put("name", DROP)], ["name: is required"]),
    ("control character", [put("name", "a\x00b")], ["name: control characters are not allowed"]),
    ("repository", [put("images.0.repository", "NoSlash")],
     ["images[0].repository: 'NoSlash' is not a repository name: namespace/name in lowercase letters, digits "
      "and . _ -"]),
    ("image tag", [put("images.0.tags", ["16", "bad tag"])],
     ["images[0].tags[1]: 'bad tag' is not an image tag: up to 128 letters, digits and . _ -, not starting "
      "with . or -"]),
    ("nine screenshots", [put("screenshots", list(range(1, 10)))],
     ["screenshots: at most 8 screenshots (9 given)"]),
    ("several at once", [put("slug", "-x"), put("license_url", "x"), put("tiers.1.price.currency", "usx")],
     [f"slug: '-x' {SLUG_RULE}", "tiers[1].price.currency: 'usx' is not an ISO 4217 code",
      "license_url: 'x' is not an http(s) URL"]),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "expected"), [(c, e) for _, c, e in BAD], ids=[n for n, _, _ in BAD])
def test_bad_manifest_gives_its_field_errors(changes: list[Change], expected: list[str]) -> None:
    data = manifest("acme")
    for change in changes:
        change(data)
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(data)
    assert [str(p) for p in caught.value.problems] == expected
    assert caught.value.detail == [
        {"field": p.split(": ", 1)[0], "message": p.split(": ", 1)[1]} for p in expected
    ]


def test_the_complete_manifest_is_good_and_submittable() -> None:
    parsed = parse_manifest(manifest("acme", logo=1, screenshots=[2]))
    assert submission_problems(parsed) == []
    assert parsed.tiers[0].is_free and parsed.tiers[1].price is not None


def test_a_draft_may_be_incomplete_but_says_what_submitting_needs() -> None:
    draft = parse_manifest({"name": "Acme", "slug": "acme", "compatibility": "none"})
    assert [str(p) for p in submission_problems(draft)][:3] == [
        "logo: is required before submitting",
        "short_description: is required before submitting",
        "category: is required before submitting",
    ]
    assert any(
        p.path == "compatibility" and "'none' cannot be submitted" in p.message
        for p in submission_problems(draft)
    )


def test_not_a_mapping() -> None:
    with pytest.raises(ManifestInvalid, match="a manifest is a mapping of fields"):
        parse_manifest(["name"])
