"""The one table of OCI distribution error codes: code -> (HTTP status, message)."""

from __future__ import annotations

from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    Invalid,
    NotFound,
    RangeInvalid,
    TooLarge,
    Unauthenticated,
    Unsupported,
)

OCI_ERRORS: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "RANGE_INVALID": (416, "invalid content range"),
    "MANIFEST_TOO_LARGE": (413, "manifest too large"),
}

# When a service raised a generic error, the OCI code it stands for.
_DEFAULT_CODE: list[tuple[type[DockyardError], str]] = [
    (Unauthenticated, "UNAUTHORIZED"),
    (Forbidden, "DENIED"),
    (NotFound, "NAME_UNKNOWN"),
    (RangeInvalid, "RANGE_INVALID"),
    (TooLarge, "SIZE_INVALID"),
    (Unsupported, "UNSUPPORTED"),
    (Conflict, "DENIED"),
    (Invalid, "BLOB_UPLOAD_INVALID"),
]


def oci_error(exc: DockyardError) -> tuple[int, str, str]:
    """(status, code, message) of the OCI envelope for a domain error."""
    code = (
        exc.code
        if exc.code in OCI_ERRORS
        else next((c for cls, c in _DEFAULT_CODE if isinstance(exc, cls)), "UNSUPPORTED")
    )
    status, default_message = OCI_ERRORS[code]
    message = exc.message if exc.message and exc.message != type(exc).__name__ else default_message
    return status, code, message
