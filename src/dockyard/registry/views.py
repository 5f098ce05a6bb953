"""OCI Distribution v1.1 endpoints under /v2/: thin views over RegistryService and the BlobStore."""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from dockyard.compliance.policy import warning_header
from dockyard.errors import Invalid, NotFound, RangeInvalid, TooLarge
from dockyard.oci import mediatypes
from dockyard.oci.manifest import build_index
from dockyard.registry.access import CATALOG, AuthChallenge, authenticate, authorize, can
from dockyard.registry.auth import bearer_challenge, granted_actions
from dockyard.registry.services import StoredManifest
from dockyard.spec import parse_digest, validate_name
from dockyard.web.context import RequestContext, endpoint
from dockyard.web.errors import oci_error_response

log = logging.getLogger("dockyard.registry")

PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?P<name>.+)/manifests/(?P<reference>[^/]+)$"), "manifest"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/?$"), "upload_start"),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<upload>[^/]+)$"), "upload"),
    (re.compile(r"^(?P<name>.+)/blobs/(?P<digest>[^/]+)$"), "blob"),
    (re.compile(r"^(?P<name>.+)/tags/list$"), "tags"),
    (re.compile(r"^(?P<name>.+)/referrers/(?P<digest>[^/]+)$"), "referrers"),
]


class BlobFileResponse(FileResponse):
    chunk_size = 4 * 1024 * 1024  # 64 KiB chunks cap pulls at a fraction of the disk's speed


# -- helpers ---------------------------------------------------------------------------------------
def upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": upload_location(name, upload_id),
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
        "Content-Length": "0",
    }


def blob_created(name: str, digest: str) -> Response:
    return Response(
        status_code=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )


def body_stream(request: Request) -> AsyncIterator[bytes]:
    return request.stream()


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise Invalid("bad Content-Length", code="SIZE_INVALID")
    return int(value)


def query_digest(request: Request) -> str:
    digest = request.query_params.get("digest")
    if not digest:
        raise Invalid("digest parameter missing", code="DIGEST_INVALID")
    parse_digest(digest)
    return digest


def parse_n(request: Request) -> int | None:
    value = request.query_params.get("n")
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) > 10000:
        raise Invalid("n must be an integer between 0 and 10000", code="PAGINATION_NUMBER_INVALID")
    return int(value)


# -- views -----------------------------------------------------------------------------------------
@endpoint(oci_error_response)
async def base(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    if ctx.claims is None:
        raise AuthChallenge(
            "authentication required", {"WWW-Authenticate": bearer_challenge(ctx.state.settings)}
        )
    return JSONResponse({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})


async def dispatch(request: Request) -> Response:
    """Route /v2/<name>/... by the path's tail, since names themselves contain slashes."""
    rest = request.path_params["rest"]
    if rest in ("_catalog", "_catalog/"):
        request.scope["dockyard.route"] = "catalog"
        if request.method not in ("GET", "HEAD"):
            return oci_error_response(request, Invalid("method not allowed", code="UNSUPPORTED"))
        return await catalog(request)
    for pattern, kind in PATTERNS:
        match = pattern.match(rest)
        if match:
            request.scope["dockyard.route"] = kind
            request.scope["path_params"].update(match.groupdict())
            view = None
            if rest.startswith("store/"):  # the store's paths: served from the live revision's pins
                view = _store_views().get((kind, request.method))
            view = view or VIEWS.get((kind, request.method))
            if view is None:
                return oci_error_response(request, Invalid("method not allowed", code="UNSUPPORTED"))
            return await view(request)
    return oci_error_response(request, NotFound("no such endpoint", code="NAME_UNKNOWN"))


def _store_views() -> dict[tuple[str, str], Any]:
    from dockyard.registry.store_views import STORE_VIEWS  # imports this module's helpers

    return STORE_VIEWS


def _name(request: Request) -> str:
    return validate_name(request.path_params["name"])


@endpoint(oci_error_response)
async def catalog(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx, CATALOG)
    if ctx.claims is None or "*" not in granted_actions(ctx.claims, "registry", "catalog"):
        raise AuthChallenge(
            "authentication required",
            {
                "WWW-Authenticate": bearer_challenge(
                    ctx.state.settings, "registry:catalog:*", "insufficient_scope" if ctx.claims else None
                )
            },
        )
    n, last = parse_n(request), request.query_params.get("last")
    names, more = await ctx.run(ctx.registry().catalog, n, last)
    headers = {}
    if more and names:
        headers["Link"] = f'</v2/_catalog?{urlencode({"n": n, "last": names[-1]})}>; rel="next"'
    return JSONResponse({"repositories": names}, headers=headers)


# manifests ---------------------------------------------------------------------------------------
@endpoint(oci_error_response, write_methods=frozenset({"GET"}))  # a GET records the pull
async def get_manifest(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    reference = request.path_params["reference"]
    await authorize(ctx, name, "pull")
    # With batched pull events the request only reads: no write transaction, no SQLite write gate.
    ctx.write = request.method == "GET" and ctx.state.pull_recorder is None
    registry = ctx.registry()

    def load() -> Any:
        if not ctx.write:
            registry.autocommit_read()
        stored = registry.get_manifest(name, reference)
        if request.method == "GET":
            registry.record_pull(name, reference, stored.digest, ctx.actor)
        return stored

    stored = await ctx.transact(load)
    return manifest_response(request, stored)


def manifest_response(request: Request, stored: StoredManifest, warning: str | None = None) -> Response:
    """A stored manifest as a GET (or HEAD) answers it: at a repository's path or a store path alike.
    ``warning``: the text of an OCI ``Warning: 299`` header (a held or revoked store product), which
    registry clients print."""
    headers = {
        "Docker-Content-Digest": stored.digest,
        "Content-Type": stored.media_type,
        "Content-Length": str(len(stored.payload)),
        "ETag": f'"{stored.digest}"',
    }
    if warning:
        headers["Warning"] = warning_header(warning)
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return Response(stored.payload, status_code=200, headers=headers, media_type=stored.media_type)


@endpoint(oci_error_response)
async def put_manifest(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    reference = request.path_params["reference"]
    await authorize(ctx, name, "push")
    limit = ctx.state.settings.max_manifest_bytes
    length = content_length(request)
    if length is not None and length > limit:
        raise TooLarge(f"manifest larger than {limit} bytes", code="MANIFEST_TOO_LARGE")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"manifest larger than {limit} bytes", code="MANIFEST_TOO_LARGE")
    if length is not None and len(body) != length:
        raise Invalid("body shorter than Content-Length", code="MANIFEST_INVALID")
    stored = await ctx.transact(
        ctx.registry().put_manifest,
        name,
        reference,
        bytes(body),
        request.headers.get("content-type"),
        ctx.actor,
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{stored.digest}",
        "Docker-Content-Digest": stored.digest,
        "Content-Length": "0",
    }
    if stored.subject_digest:
        headers["OCI-Subject"] = stored.subject_digest
    return Response(status_code=201, headers=headers)


@endpoint(oci_error_response)
async def delete_manifest(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    await authorize(ctx, name, "delete")
    await ctx.run(ctx.registry().delete_manifest, name, request.path_params["reference"], ctx.actor)
    return Response(status_code=202, headers={"Content-Length": "0"})


# blobs -------------------------------------------------------------------------------------------
@endpoint(oci_error_response)
async def get_blob(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    digest = request.path_params["digest"]
    parse_digest(digest)
    await authorize(ctx, name, "pull")
    registry = ctx.registry()

    def linked_size() -> int:
        registry.autocommit_read()
        return registry.blob_size(name, digest)

    size = await ctx.transact(linked_size)
    return blob_response(request, ctx, digest, size)


def blob_response(request: Request, ctx: RequestContext, digest: str, size: int) -> Response:
    """A blob's bytes (GET) or headers (HEAD), once access is checked: a redirect to the delivery server,
    the local file, or a stream from the driver."""
    path = ctx.state.blobs.local_path(digest)
    urls = ctx.state.blob_urls
    if request.method == "GET" and path is not None and urls is not None:
        # Access is checked: the bytes come from the delivery server, zero-copy, on a URL whose signature
        # expires in minutes (no-store: a cached redirect would outlive it).
        location = {"Location": urls.url(digest), "Cache-Control": "no-store"}
        return Response(status_code=307, headers={"Docker-Content-Digest": digest, **location})
    headers = {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Cache-Control": "private, max-age=31536000, immutable",  # no shared cache keeps a private layer
        "X-Content-Type-Options": "nosniff",
    }
    if path is not None:
        try:
            # Stat once, here: gc may remove an unreferenced blob at any moment, and a FileResponse that
            # stats the path itself would then fail with a 500 instead of this 404.
            stat_result = os.stat(path)
        except FileNotFoundError:
            raise NotFound("blob unknown to registry", code="BLOB_UNKNOWN") from None
        return BlobFileResponse(
            path, media_type="application/octet-stream", headers=headers, stat_result=stat_result
        )
    headers["Content-Length"] = str(size)
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(
        ctx.state.blobs.iter_range(digest, 0, size - 1),
        headers=headers,
        media_type="application/octet-stream",
    )


@endpoint(oci_error_response)
async def delete_blob(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    digest = request.path_params["digest"]
    parse_digest(digest)
    await authorize(ctx, name, "delete")
    await ctx.run(ctx.registry().delete_blob, name, digest, ctx.actor)
    return Response(status_code=202, headers={"Content-Length": "0"})


# uploads -----------------------------------------------------------------------------------------
@endpoint(oci_error_response)
async def start_upload(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    params = request.query_params
    mount, source = params.get("mount"), params.get("from")
    await authorize(ctx, name, "push", pull_from=source if mount else None)
    blobs = ctx.state.blobs
    if mount:
        parse_digest(mount)
        if source and can(ctx, source, "pull"):
            size = await ctx.run(ctx.registry().mount_blob, name, source, mount, ctx.actor)
            if size is not None:
                return blob_created(name, mount)
        # Not mountable (unknown, or not readable by this user): an ordinary upload session instead.
    elif params.get("digest") is not None:
        # A single-request upload: the body streams before any database work (and SQLite's write gate).
        digest = query_digest(request)
        upload_id = str(uuid.uuid4())
        await ctx.io(blobs.start_upload, upload_id, name)
        try:
            size = await blobs.append(
                upload_id, 0, body_stream(request), expected_length=content_length(request)
            )
        except BaseException:
            await ctx.io(blobs.discard_upload, upload_id)  # the client never learnt this session's id
            raise
        await finish_upload(ctx, name, upload_id, digest, size)
        return blob_created(name, digest)
    await ctx.run(ctx.registry().ensure_repository, name, ctx.actor)
    upload_id = str(uuid.uuid4())
    await ctx.io(blobs.start_upload, upload_id, name)
    return Response(status_code=202, headers=upload_headers(name, upload_id, 0))


async def finish_upload(ctx: RequestContext, name: str, upload_id: str, digest: str, size: int) -> None:
    blobs = ctx.state.blobs
    try:
        await ctx.io(blobs.commit, upload_id, digest, size)
    except Invalid:
        await ctx.io(blobs.discard_upload, upload_id)  # a wrong digest ends the session: nothing is kept
        raise
    await ctx.run(ctx.registry().record_blob, name, digest, size, ctx.actor)


async def _upload(ctx: RequestContext, request: Request) -> tuple[str, str, int]:
    name = _name(request)
    await authorize(ctx, name, "push")
    upload_id = request.path_params["upload"]
    size = ctx.state.blobs.upload_size(upload_id) if _valid_upload_id(upload_id) else None
    if size is None or ctx.state.blobs.upload_owner(upload_id) != name:
        raise NotFound("upload unknown", code="BLOB_UPLOAD_UNKNOWN", detail={"upload": upload_id})
    return name, upload_id, size


def _valid_upload_id(upload_id: str) -> bool:
    try:
        uuid.UUID(upload_id)
    except ValueError:
        return False
    return True


def _parse_content_range(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?", value.strip())
    if not match:
        raise RangeInvalid(f"bad Content-Range {value!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RangeInvalid(f"bad Content-Range {value!r}")
    return start, end


@endpoint(oci_error_response)
async def patch_upload(request: Request, ctx: RequestContext) -> Response:
    name, upload_id, size = await _upload(ctx, request)
    length = content_length(request)
    content_range = request.headers.get("content-range")
    if content_range:
        start, end = _parse_content_range(content_range)
        if start != size:
            exc = RangeInvalid(f"chunk starts at {start}, upload has {size} bytes")
            exc.headers = {
                k: v for k, v in upload_headers(name, upload_id, size).items() if k != "Content-Length"
            }
            raise exc
        if length is not None and length != end - start + 1:
            raise RangeInvalid("Content-Range does not match Content-Length")
    new_size = await ctx.state.blobs.append(upload_id, size, body_stream(request), expected_length=length)
    return Response(status_code=202, headers=upload_headers(name, upload_id, new_size))


@endpoint(oci_error_response)
async def put_upload(request: Request, ctx: RequestContext) -> Response:
    name, upload_id, size = await _upload(ctx, request)
    digest = query_digest(request)
    length = content_length(request)
    content_range = request.headers.get("content-range")
    if content_range and _parse_content_range(content_range)[0] != size:
        raise RangeInvalid("chunk does not start at the end of the upload")
    if length or length is None:
        size = await ctx.state.blobs.append(upload_id, size, body_stream(request), expected_length=length)
    await finish_upload(ctx, name, upload_id, digest, size)
    return blob_created(name, digest)


@endpoint(oci_error_response)
async def get_upload(request: Request, ctx: RequestContext) -> Response:
    name, upload_id, size = await _upload(ctx, request)
    ctx.state.blobs.touch_upload(upload_id)
    return Response(status_code=204, headers=upload_headers(name, upload_id, size))


@endpoint(oci_error_response)
async def delete_upload(request: Request, ctx: RequestContext) -> Response:
    _, upload_id, _ = await _upload(ctx, request)
    await ctx.io(ctx.state.blobs.discard_upload, upload_id)
    return Response(status_code=204, headers={"Content-Length": "0"})


# discovery ---------------------------------------------------------------------------------------
@endpoint(oci_error_response)
async def list_tags(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    await authorize(ctx, name, "pull")
    n, last = parse_n(request), request.query_params.get("last")
    tags, more = await ctx.run(ctx.registry().list_tags, name, n, last)
    headers = {}
    if more and tags:
        headers["Link"] = f'</v2/{name}/tags/list?{urlencode({"n": n, "last": tags[-1]})}>; rel="next"'
    return JSONResponse({"name": name, "tags": tags}, headers=headers)


@endpoint(oci_error_response)
async def referrers(request: Request, ctx: RequestContext) -> Response:
    name = _name(request)
    digest = request.path_params["digest"]
    parse_digest(digest)
    await authorize(ctx, name, "pull")
    artifact_type = request.query_params.get("artifactType")
    descriptors = await ctx.run(ctx.registry().referrers, name, digest, artifact_type)
    headers = {"Content-Type": mediatypes.OCI_INDEX}
    if artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    return Response(build_index(descriptors), headers=headers, media_type=mediatypes.OCI_INDEX)


VIEWS: dict[tuple[str, str], Any] = {
    ("manifest", "GET"): get_manifest,
    ("manifest", "HEAD"): get_manifest,
    ("manifest", "PUT"): put_manifest,
    ("manifest", "DELETE"): delete_manifest,
    ("blob", "GET"): get_blob,
    ("blob", "HEAD"): get_blob,
    ("blob", "DELETE"): delete_blob,
    ("upload_start", "POST"): start_upload,
    ("upload", "PATCH"): patch_upload,
    ("upload", "PUT"): put_upload,
    ("upload", "GET"): get_upload,
    ("upload", "DELETE"): delete_upload,
    ("tags", "GET"): list_tags,
    ("referrers", "GET"): referrers,
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The /v2 API as a bare ASGI app, mounted ahead of Starlette's middleware stack and router.

    Every pull and push passes here; the generic stack (page sessions, exception middlewares, route
    matching) costs more per request than the database does, and none of it applies to /v2. This
    does what that stack would: route, and turn an unexpected exception into a 500 in the OCI envelope.
    """
    request = Request(scope, receive, send)
    path = scope["path"]
    try:
        if path in ("/v2", "/v2/"):
            scope["dockyard.route"] = "v2"
            if request.method in ("GET", "HEAD"):
                response = await base(request)
            else:
                response = oci_error_response(request, Invalid("method not allowed", code="UNSUPPORTED"))
        else:
            scope["path_params"] = {"rest": path[4:]}
            response = await dispatch(request)
    except Exception:
        log.exception("unhandled error: %s %s", request.method, path)
        response = JSONResponse(
            {"errors": [{"code": "UNKNOWN", "message": "internal server error"}]}, status_code=500
        )
    await response(scope, receive, send)


__all__ = ["app", "json", "quote"]
