"""The product manifest: one pydantic model checked alike by the API, the pages and `dockyard product`.

Two levels of checks. ``parse_manifest`` checks the form of every field a draft holds (a draft may be
incomplete); ``submission_problems`` says what a manifest still lacks before it can be submitted. Both
report problems as ``Problem(path, message)``, the path in the manifest's own spelling
(``tiers[1].price.currency``), so a page can put each message beside its field and the CLI print one line
each. Checks that need the database (the repositories exist, are the publisher's own and private, the tags
exist; the images are the publisher's) are the service's, reported the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from dockyard.errors import Invalid

MANIFEST_VERSION = 1
SHORT_DESCRIPTION_MAX = 140
MAX_TAGS = 10
MAX_SCREENSHOTS = 8
MAX_IMAGES = 20
MAX_TIERS = 10
MARKDOWN_MAX = 100_000
# A public repository may back a product only when the manifest says so (``allow_public_repositories``).


class Category(StrEnum):
    DATABASE = "Database"
    NETWORKING = "Networking"
    BUSINESS_SOFTWARE = "Business Software"
    SECURITY = "Security"
    MONITORING = "Monitoring"
    DEVELOPER_TOOLS = "Developer Tools"
    STORAGE = "Storage"
    ANALYTICS = "Analytics"
    OPERATING_SYSTEMS = "Operating Systems"
    PROGRAMMING_LANGUAGES = "Programming Languages"
    MACHINE_LEARNING = "Machine Learning"
    WEB_SERVERS = "Web Servers"
    MESSAGING = "Messaging"


class Compatibility(StrEnum):
    ENTERPRISE = (
        "enterprise"  # runs on certified infrastructure: publishable, later certifiable; support required
    )
    COMMUNITY = "community"  # publishable, never certified; support optional
    NONE = "none"  # cannot be submitted


COMPATIBILITY_RULE = (
    "Products must be compatible with certified infrastructure (enterprise) or declared community "
    "products; a product of compatibility 'none' cannot be submitted to the store."
)


class Period(StrEnum):
    ONE_TIME = "one-time"
    MONTH = "month"
    YEAR = "year"


SLUG = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
IMAGE_NAME = r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$"
SEARCH_TAG = r"^[a-z0-9][a-z0-9.+-]{0,31}$"
OCI_TAG = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
REPOSITORY = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+$"
EMAIL = r"^[^@\s<>\x00]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"
NO_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        if NO_CONTROL.search(value):
            raise ValueError("control characters are not allowed")
        return value.strip()
    return value


def _url(value: Any) -> Any:
    value = _clean(value)
    if isinstance(value, str) and not re.match(r"^https?://[^\s/?#@]+\.[^\s/?#@]+(?:[/?#][^\s]*)?$", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


Line = Annotated[str, BeforeValidator(_clean), StringConstraints(min_length=1, max_length=200)]
Url = Annotated[str, BeforeValidator(_url), StringConstraints(max_length=2048)]
Markdown = Annotated[str, BeforeValidator(_clean), StringConstraints(max_length=MARKDOWN_MAX)]
Email = Annotated[str, BeforeValidator(_clean), StringConstraints(max_length=320, pattern=EMAIL)]
# A catalogue image: its id once uploaded (the API and the stored manifest), a file path in a
# dockyard-product.yaml (resolved to an id by `dockyard product push`).
ImageRef = int | Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Sla(_Model):
    hours: Line = Field(description='when support answers, e.g. "24x7" or "Mon-Fri 9-17 CET"')
    response: Line = Field(description='how soon, e.g. "4 hours"')


class Support(_Model):
    url: Url | None = Field(default=None, description="the support site (the manifest's support link)")
    email: Email | None = None
    resources: list[Url] = Field(default_factory=list, max_length=10, description="self-help links")
    sla: Sla | None = None


class Price(_Model):
    """A paid price: an amount in the currency's minor units (cents), an ISO 4217 code and a period."""

    amount: int = Field(gt=0, le=100_000_000, strict=True)
    currency: str
    period: Period

    @field_validator("currency", mode="before")
    @classmethod
    def _iso_4217(cls, value: Any) -> Any:
        import pycountry

        if not isinstance(value, str) or pycountry.currencies.get(alpha_3=value.upper()) is None:
            raise ValueError(f"{value!r} is not an ISO 4217 code")
        return value.upper()


def _free(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "free":
        return None
    if value is None:
        raise ValueError("give 'free' or {amount, currency, period}")
    return value


class Tier(_Model):
    name: Line = Field(max_length=60)
    description: Annotated[str, BeforeValidator(_clean), StringConstraints(max_length=1000)] = ""
    price: Annotated[Price | None, BeforeValidator(_free)] = Field(
        description="'free', or {amount (minor units), currency (ISO 4217), period (one-time|month|year)}"
    )
    images: list[Annotated[str, StringConstraints(pattern=IMAGE_NAME)]] = Field(
        min_length=1, max_length=MAX_IMAGES, description="the names of the images this tier entitles"
    )
    anonymous_pulls: bool = Field(
        default=False,
        description="a free tier only: anyone may pull its images at the store path without an account",
    )

    @property
    def is_free(self) -> bool:
        return self.price is None

    @field_serializer("price")
    def _dump_price(self, price: Price | None) -> Any:
        return "free" if price is None else price.model_dump(mode="json")


class Image(_Model):
    name: Annotated[str, StringConstraints(pattern=IMAGE_NAME)] = Field(
        description="the customer-facing name, e.g. server or agent"
    )
    repository: Annotated[str, StringConstraints(max_length=255, pattern=REPOSITORY)] = Field(
        description="the publisher's staging repository (never shown to customers)"
    )
    tags: list[Annotated[str, StringConstraints(pattern=OCI_TAG)]] = Field(min_length=1, max_length=20)


class ProductManifest(_Model):
    """Every item of a product's listing (the seed's content manifest)."""

    publisher: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="the publisher's organisation (only checked: the URL names it)"
    )
    name: Line = Field(max_length=100)
    slug: Annotated[str, StringConstraints(pattern=SLUG)]
    logo: ImageRef | None = None
    short_description: Annotated[str, BeforeValidator(_clean), StringConstraints(max_length=1000)] = ""
    category: Category | None = None
    tags: list[Annotated[str, StringConstraints(pattern=SEARCH_TAG)]] = Field(default_factory=list)
    long_description: Markdown = ""
    screenshots: list[ImageRef] = Field(default_factory=list)
    support: Support | None = None
    compatibility: Compatibility | None = None
    images: list[Image] = Field(default_factory=list, max_length=MAX_IMAGES)
    tiers: list[Tier] = Field(default_factory=list, max_length=MAX_TIERS)
    install: Markdown = ""
    license_url: Url | None = None
    allow_public_repositories: bool = Field(
        default=False, description="let public repositories back this product (private ones only, else)"
    )

    # The limits whose message should say the actual count (pydantic's would not name the field's rule).
    @field_validator("short_description")
    @classmethod
    def _short(cls, value: str) -> str:
        if len(value) > SHORT_DESCRIPTION_MAX:
            raise ValueError(f"at most {SHORT_DESCRIPTION_MAX} characters ({len(value)} given)")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = [t.strip().lower() if isinstance(t, str) else t for t in value]
            if len(value) > MAX_TAGS:
                raise ValueError(f"at most {MAX_TAGS} tags ({len(value)} given)")
            if len(set(map(str, value))) != len(value):
                raise ValueError("tags must be distinct")
        return value

    @field_validator("screenshots", mode="before")
    @classmethod
    def _screenshots(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_SCREENSHOTS:
            raise ValueError(f"at most {MAX_SCREENSHOTS} screenshots ({len(value)} given)")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> ProductManifest:
        problems: list[Problem] = []
        names = [image.name for image in self.images]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(Problem(f"images[{i}].name", f"{name!r} is used by another image"))
        tier_names = [tier.name.lower() for tier in self.tiers]
        for i, tier in enumerate(self.tiers):
            if tier_names[i] in tier_names[:i]:
                problems.append(Problem(f"tiers[{i}].name", f"{tier.name!r} is used by another tier"))
            if tier.anonymous_pulls and not tier.is_free:  # a paid tier pulled anonymously is given away
                problems.append(
                    Problem(f"tiers[{i}].anonymous_pulls", "only a free tier may allow anonymous pulls")
                )
            for j, image in enumerate(tier.images):
                if image not in names:
                    problems.append(Problem(f"tiers[{i}].images[{j}]", f"no image is named {image!r}"))
        if problems:
            raise ManifestInvalid(problems)
        return self

    def image(self, name: str) -> Image | None:
        return next((image for image in self.images if image.name == name), None)


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "tiers[1].price.currency"; "" for the manifest as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def as_detail(self) -> dict[str, str]:
        return {"field": self.path, "message": self.message}


class ManifestInvalid(Invalid):
    """One or more problems in a manifest; ``detail`` lists them as ``[{field, message}]``."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(
            str(problems[0]) if len(problems) == 1 else f"{len(problems)} problems, first: {problems[0]}",
            detail=[p.as_detail() for p in problems],
        )
        self.problems = problems


def field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's location ``("tiers", 1, "price", "currency")`` as ``tiers[1].price.currency``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("function-before[_free(), nullable[Price]]",) or "[" in str(part):
            continue  # a validator's own step in the location, not a field
        else:
            path += f".{part}" if path else str(part)
    return path


# What each pattern means, said to people (pydantic's message would quote the regular expression).
PATTERN_MESSAGES = {
    SLUG: "is not a slug: 1 to 64 lowercase letters, digits and hyphens, not starting or ending with one",
    IMAGE_NAME: "is not an image name: 1 to 32 lowercase letters, digits and hyphens",
    SEARCH_TAG: "is not a search tag: up to 32 lowercase letters, digits and . + -",
    OCI_TAG: "is not an image tag: up to 128 letters, digits and . _ -, not starting with . or -",
    REPOSITORY: "is not a repository name: namespace/name in lowercase letters, digits and . _ -",
    EMAIL: "is not an email address",
}


def _message(e: Any) -> str:
    kind, value, ctx = e.get("type"), e.get("input"), e.get("ctx") or {}
    if kind == "extra_forbidden":
        return "is not a field of the manifest"
    if kind == "missing":
        return "is required"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_MESSAGES:
        return f"{value!r} {PATTERN_MESSAGES[ctx['pattern']]}"
    if kind == "enum":
        return f"{value!r} is not one of {ctx.get('expected', '')}"
    if kind in ("model_type", "model_attributes_type", "dict_type") and e.get("loc", ())[-1:] == ("price",):
        return f"{value!r} is not a price: give 'free' or {{amount, currency, period}}"
    return str(e.get("msg", "invalid")).removeprefix("Value error, ")


def problems_of(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for e in error.errors():
        ctx_error = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_error, ManifestInvalid):
            problems.extend(ctx_error.problems)
            continue
        problems.append(Problem(field_path(tuple(e.get("loc", ()))), _message(e)))
    return problems


def parse_manifest(data: Any) -> ProductManifest:
    """The manifest in ``data`` (a mapping from JSON, YAML or a form), or ManifestInvalid listing every
    problem with its path."""
    if not isinstance(data, dict):
        raise ManifestInvalid([Problem("", "a manifest is a mapping of fields")])
    try:
        return ProductManifest.model_validate(data)
    except ManifestInvalid:
        raise
    except ValidationError as exc:
        raise ManifestInvalid(problems_of(exc)) from None


def submission_problems(manifest: ProductManifest) -> list[Problem]:
    """What the manifest lacks before it can be submitted for review (empty when nothing)."""
    problems: list[Problem] = []

    def need(ok: object, path: str, message: str = "is required before submitting") -> None:
        if not ok:
            problems.append(Problem(path, message))

    need(manifest.logo is not None, "logo")
    need(manifest.short_description, "short_description")
    need(manifest.category is not None, "category")
    need(manifest.long_description.strip(), "long_description")
    need(manifest.screenshots, "screenshots", "at least one screenshot is required before submitting")
    need(manifest.support and manifest.support.url, "support.url", "a support link is required")
    need(manifest.images, "images", "at least one image is required before submitting")
    need(manifest.tiers, "tiers", "at least one tier is required before submitting")
    need(manifest.install.strip(), "install")
    need(manifest.license_url, "license_url")
    if manifest.compatibility is None:
        problems.append(Problem("compatibility", "is required before submitting (enterprise or community)"))
    elif manifest.compatibility is Compatibility.NONE:
        problems.append(Problem("compatibility", f"'none' cannot be submitted: {COMPATIBILITY_RULE}"))
    elif manifest.compatibility is Compatibility.ENTERPRISE:
        support = manifest.support
        need(
            support and support.email and support.sla,
            "support",
            "enterprise products need publisher support: a support email and an SLA (hours, response)",
        )
    offered = {name for tier in manifest.tiers for name in tier.images}
    for i, image in enumerate(manifest.images):
        need(image.name in offered, f"images[{i}]", f"{image.name!r} is not offered by any tier")
    return problems


def check_submittable(manifest: ProductManifest) -> None:
    """ManifestInvalid unless the manifest is complete (``submission_problems`` is empty)."""
    problems = submission_problems(manifest)
    if problems:
        raise ManifestInvalid(problems)


def dump_manifest(manifest: ProductManifest) -> dict[str, Any]:
    """The manifest as stored and served: JSON types, free tiers as "free", no unset optional noise."""
    return manifest.model_dump(mode="json", exclude_none=False)


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema, served at /api/v1/schemas/product.json."""
    schema = ProductManifest.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "/api/v1/schemas/product.json"
    schema["title"] = "dockyard product manifest"
    return schema


Kind = Literal["logo", "screenshot"]
