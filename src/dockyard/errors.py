"""Domain errors. No HTTP here: ``web/errors.py`` maps them to responses for each protocol."""

from __future__ import annotations

from typing import Any


class DockyardError(Exception):
    """Base of every error a service may raise."""

    code: str = "UNKNOWN"

    def __init__(self, message: str = "", *, code: str | None = None, detail: Any = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        if code is not None:
            self.code = code
        self.detail = detail


class NotFound(DockyardError):
    code = "NOT_FOUND"


class Conflict(DockyardError):
    code = "CONFLICT"


class Forbidden(DockyardError):
    code = "DENIED"


class EmailUnverified(Forbidden):
    """The password is right but the account's email address is not confirmed yet: no session, no token.
    The request fails; the audit row of the refused login is kept."""

    code = "EMAIL_UNVERIFIED"
    keep_writes = True


class Unauthenticated(DockyardError):
    code = "UNAUTHORIZED"


class LoginFailed(Unauthenticated):
    """Wrong credentials: the request fails, but its audit row of the failed login is kept."""

    keep_writes = True


class TooManyRequests(DockyardError):
    """Slow down: ``retry_after`` seconds from now the same request may succeed."""

    code = "TOOMANYREQUESTS"

    def __init__(self, message: str = "", *, retry_after: int = 1, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(1, int(retry_after))
        self.headers = {"Retry-After": str(self.retry_after)}


class Invalid(DockyardError):
    code = "INVALID"


class TooLarge(DockyardError):
    code = "TOO_LARGE"


class RangeInvalid(DockyardError):
    code = "RANGE_INVALID"


class Unsupported(DockyardError):
    code = "UNSUPPORTED"
