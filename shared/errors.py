"""One error hierarchy for the whole service; the gateway maps it to HTTP in a single handler."""

from __future__ import annotations


class AppError(Exception):
    """A failure with a stable machine-readable code, a human message and an HTTP status."""

    status: int = 500
    code: str = "internal_error"
    # Seconds a client should wait before trying again (429/503 answers carry it as Retry-After).
    retry_after_s: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after_s: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(AppError):
    status, code = 400, "bad_request"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


class InvalidImage(AppError):
    status, code = 422, "invalid_image"


class TooManyRequests(AppError):
    status, code = 429, "rate_limited"


class Overloaded(AppError):
    status, code = 503, "overloaded"


class ServiceUnavailable(AppError):
    status, code = 503, "service_unavailable"


class Timeout(AppError):
    status, code = 504, "timeout"
