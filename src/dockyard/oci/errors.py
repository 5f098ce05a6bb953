"""The spec's own error, and the error codes of the OCI distribution protocol: code -> (HTTP status, message).

Spec data, like the media types: the registry (``registry/errors.py``, which maps domain errors onto these
codes) and the blob delivery server (which speaks the same envelope) both read this one table.
"""

from __future__ import annotations

from typing import Any


class OciSpecError(ValueError):
    """A value the OCI specs do not allow (a digest, a name, a tag, a manifest), raised by ``dockyard.oci``.

    ``code`` is the distribution error code it stands for (``DIGEST_INVALID``, ``MANIFEST_INVALID``,
    ``NAME_INVALID``, ``TAG_INVALID``), ``detail`` the offending parts (JSON-able). Domain code gets it as
    ``dockyard.errors.Invalid`` through ``dockyard.spec``, which calls these checks and translates.
    """

    def __init__(self, message: str, *, code: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.detail = detail


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
