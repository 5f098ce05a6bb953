"""The store's paths under /v2: ``store/<publisher>/<product>/<image>``, pulled only (manifests, blobs,
tags), served from the digests the live revision pins and read from the publisher's staging repository.

Access is the token's (``RegistryService.allowed_actions`` asks the entitlement rules), so refusals are the
very 401 a missing repository gets. Once granted: a tag answers its pinned digest only (later pushes to the
staging tag change nothing), a digest only when pinned or reachable from a pin. No response names the
staging repository: errors name the store path. Each manifest GET is a download event, recorded off the
pull path.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.compliance.policy import PullVerdict, pull_verdict
from dockyard.db import utcnow
from dockyard.entitlements.downloads import download_row, write_downloads
from dockyard.entitlements.store import LiveRevision, StoreCatalog, split_store_name
from dockyard.errors import Forbidden, NotFound
from dockyard.registry.access import authorize
from dockyard.registry.services import StoredManifest
from dockyard.registry.views import _name, blob_response, manifest_response, parse_n
from dockyard.spec import parse_digest
from dockyard.web.context import RequestContext, endpoint
from dockyard.web.errors import oci_error_response


def _unknown(name: str) -> NotFound:
    return NotFound(f"repository {name!r} not known", code="NAME_UNKNOWN")


def _resolve(ctx: RequestContext, name: str, catalog: StoreCatalog | None = None) -> tuple[LiveRevision, str]:
    """The live revision behind a store path and the image's name; NAME_UNKNOWN when the product is off
    the store or the image is not one of its pins."""
    parts = split_store_name(name)
    if parts is None:
        raise _unknown(name)
    publisher, product, image = parts
    catalog = catalog or StoreCatalog(ctx.session, ctx.state.store_cache)
    live = catalog.live(publisher, product)
    if live is None or image not in live.pins:
        raise _unknown(name)
    return live, image


def _verdict(ctx: RequestContext, name: str, catalog: StoreCatalog) -> PullVerdict:
    """A held or revoked product's pull: the warning it carries, or DENIED once a revocation's grace ended."""
    parts = split_store_name(name)
    product = f"{parts[0]}/{parts[1]}" if parts else name
    state = catalog.state
    verdict = pull_verdict(product, state.status, state.since, utcnow(), ctx.state.settings.revoked_pull_days)
    if verdict.denied:
        raise Forbidden(verdict.denied, code="DENIED")
    return verdict


@endpoint(oci_error_response, write_methods=frozenset({"GET"}))  # a GET records a download
async def get_manifest(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    reference = request.path_params["reference"]
    await authorize(ctx, name, "pull")
    recorder = ctx.state.download_recorder
    ctx.write = request.method == "GET" and recorder is None
    registry = ctx.registry()
    by_digest = ":" in reference
    if by_digest:
        parse_digest(reference)

    def pinned(catalog: StoreCatalog, live: LiveRevision, image: str) -> str:
        if by_digest:
            manifests, _ = catalog.reachable(live, image)
            digest = reference if reference in manifests else None
        else:
            digest = live.pins[image].tags.get(reference)
        if digest is None:
            raise NotFound("manifest unknown", code="MANIFEST_UNKNOWN", detail={"reference": reference})
        return digest

    def fast(catalog: StoreCatalog) -> tuple[LiveRevision, str, StoredManifest] | None:
        """One round trip when the revision this process last saw live still is (nearly always)."""
        parts = split_store_name(name)
        seen = catalog.cache.last_live(parts[0], parts[1]) if parts else None
        if parts is None or seen is None or parts[2] not in seen.pins:
            return None
        try:
            digest = pinned(catalog, seen, parts[2])
        except NotFound:  # unknown to the revision seen: the full path gives the answer (or the product's)
            return None
        still, row = catalog.live_with_manifest(
            parts[0], parts[1], seen.pins[parts[2]].repository, digest, seen
        )
        if not still:
            return None
        if row is None:
            raise NotFound("manifest unknown", code="MANIFEST_UNKNOWN", detail={"reference": reference})
        return seen, parts[2], StoredManifest(row.digest, row.media_type, row.payload, row.subject_digest)

    def load() -> Any:
        if not ctx.write:
            registry.autocommit_read()
        catalog = StoreCatalog(ctx.session, ctx.state.store_cache)
        found = fast(catalog)
        if found is not None:
            live, image, stored = found
        else:
            live, image = _resolve(ctx, name, catalog)
            pin = live.pins[image]
            digest = pinned(catalog, live, image)
            try:
                stored = registry.get_manifest(pin.repository, digest)
            except NotFound:  # the staging repository's own error would name it
                raise NotFound(
                    "manifest unknown", code="MANIFEST_UNKNOWN", detail={"reference": reference}
                ) from None
        verdict = _verdict(ctx, name, catalog)  # before a download is counted: a refused pull is none
        if request.method == "GET":
            row = download_row(
                live,
                image,
                None if by_digest else reference,
                stored.digest,
                ctx.principal.user_id if ctx.principal.kind == "user" else None,
                request.headers.get("user-agent", ""),
            )
            if recorder is not None:
                recorder.add(row)
            else:
                write_downloads(ctx.session, [row])
        return stored, verdict

    stored, verdict = await ctx.transact(load)
    return manifest_response(request, stored, warning=verdict.warning)


@endpoint(oci_error_response)
async def get_blob(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    digest = request.path_params["digest"]
    parse_digest(digest)
    await authorize(ctx, name, "pull")
    registry = ctx.registry()

    def linked_size() -> int:
        registry.autocommit_read()
        catalog = StoreCatalog(ctx.session, ctx.state.store_cache)
        live, image = _resolve(ctx, name, catalog)
        _verdict(ctx, name, catalog)
        _, blobs = catalog.reachable(live, image)
        if digest not in blobs:
            raise NotFound("blob unknown to registry", code="BLOB_UNKNOWN", detail={"digest": digest})
        try:
            return registry.blob_size(live.pins[image].repository, digest)
        except NotFound:
            raise NotFound(
                "blob unknown to registry", code="BLOB_UNKNOWN", detail={"digest": digest}
            ) from None

    size = await ctx.transact(linked_size)
    return blob_response(request, ctx, digest, size)


@endpoint(oci_error_response)
async def list_tags(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    await authorize(ctx, name, "pull")
    n, last = parse_n(request), request.query_params.get("last")

    def pinned() -> list[str]:
        live, image = _resolve(ctx, name)
        return sorted(live.pins[image].tags)

    tags = await ctx.run(pinned)
    if last:
        tags = [t for t in tags if t > last]
    more = n is not None and len(tags) > n
    tags = tags[:n] if n is not None else tags
    headers = {}
    if more and tags:
        headers["Link"] = f'</v2/{name}/tags/list?{urlencode({"n": n, "last": tags[-1]})}>; rel="next"'
    return JSONResponse({"name": name, "tags": tags}, headers=headers)


STORE_VIEWS: dict[tuple[str, str], Any] = {
    ("manifest", "GET"): get_manifest,
    ("manifest", "HEAD"): get_manifest,
    ("blob", "GET"): get_blob,
    ("blob", "HEAD"): get_blob,
    ("tags", "GET"): list_tags,
}
