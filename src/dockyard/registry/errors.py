"""Domain errors as OCI distribution error codes (the table of codes itself is ``oci/errors.py``)."""

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
from dockyard.oci.errors import OCI_ERRORS

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
