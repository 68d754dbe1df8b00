"""Every failure the service reports, each one class with its wire code and HTTP status.

The gateway turns any `AppError` into `{"error": {"code", "message"}}` with the class's status
in one handler. A worker stores only the code in the failed job's record (`JobError.code`);
`status_for_code` and `error_for_code` turn it back into the same answer. `ERRORS_BY_CODE`
lists them all (code, status, retry-after, the docstring as a one-line description).

Families group failures that share a status (`InvalidImage`, `NotFound`, ...): callers may
catch a family, but only a failure, a class that names its own code, can be raised. The codes
are the API: never rename one.
"""

from __future__ import annotations

import re

# What a job record's code maps to when this version does not know it (say, a newer worker
# wrote it during a rolling upgrade): the service failed, and cannot tell how.
UNKNOWN_CODE_STATUS = 500
# Messages reach clients and job records: bounded, whatever a library or a client put in them.
MAX_MESSAGE_CHARS = 1000
MAX_ECHOED_CHARS = 64
# A library's str(error) can name an object by its heap address (`<_io.BytesIO object at 0x..>`),
# which helps an attacker defeat address randomisation and tells a client nothing.
OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


class AppError(Exception):
    """A failure with a stable machine-readable code, a human message and an HTTP status."""

    code: str  # set by each failure, never by a family: `vars(cls)` tells them apart
    status: int
    # Seconds a client should wait before trying again, sent as Retry-After.
    retry_after_s: int | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in vars(cls):
            _register(cls)

    def __init__(self, message: str, *, retry_after_s: int | None = None):
        if "code" not in vars(type(self)):
            raise TypeError(f"{type(self).__name__} is a family; raise one of its failures")
        message = public_message(message)
        super().__init__(message)
        self.message = message
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


ERRORS_BY_CODE: dict[str, type[AppError]] = {}


def public_message(message: str) -> str:
    """No heap addresses, and at most `MAX_MESSAGE_CHARS` characters."""
    message = OBJECT_REPR.sub("the file", message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message


def shown(value: str) -> str:
    """A client's value quoted for a message, cut to `MAX_ECHOED_CHARS` characters."""
    if len(value) <= MAX_ECHOED_CHARS:
        return repr(value)
    return f"{value[:MAX_ECHOED_CHARS]!r}… ({len(value)} characters)"


def _register(failure: type[AppError]) -> None:
    earlier = ERRORS_BY_CODE.setdefault(failure.code, failure)
    if earlier is not failure:
        raise TypeError(f"{failure.__name__} reuses code {failure.code!r} of {earlier.__name__}")


def status_for_code(code: str) -> int:
    """The HTTP status of the failure a job record names; `UNKNOWN_CODE_STATUS` if none."""
    failure = ERRORS_BY_CODE.get(code)
    return failure.status if failure is not None else UNKNOWN_CODE_STATUS


def error_for_code(code: str, message: str) -> AppError:
    """The failure a stored job record names, ready to raise; an unknown code keeps its
    wire value, with `UNKNOWN_CODE_STATUS`."""
    failure = ERRORS_BY_CODE.get(code)
    if failure is not None:
        return failure(message)
    unknown = InternalError(message)
    unknown.code = code  # the record's code as written, on this one instance
    return unknown


def framework_refusal(status: int, message: str) -> AppError:
    """A refusal by the web framework itself (no route, wrong method, unreadable body)."""
    for failure in (UnknownPath, MethodNotAllowed):
        if status == failure.status:
            return failure(message)
    return HttpError(message, status=status)


class InternalError(AppError):
    """The service failed in a way it did not foresee."""

    code, status = "internal_error", 500


class CorruptRecord(AppError):
    """A stored job record cannot be read: damaged, or written by an incompatible version."""

    # Nothing the client sent causes it: the service's failure, the same in the gateway's
    # answer and in the failed job a worker writes in place of the unreadable record.
    code, status = "corrupt_record", 500


class BadRequest(AppError):
    status = 400


class UnknownMethod(BadRequest):
    """The explanation method is not one of gradcam, gradcam++ or eigengradcam."""

    code = "unknown_method"


class InvalidIdempotencyKey(BadRequest):
    """The Idempotency-Key header is not 1 to 255 printable ASCII characters."""

    code = "invalid_idempotency_key"


class TooManyFiles(BadRequest):
    """The batch holds more files than the service accepts in one request."""

    code = "too_many_files"


class DuplicateFilePart(BadRequest):
    """The request holds more than one `file` part; send one (or several to /v1/batches)."""

    code = "duplicate_file_part"


class HttpError(AppError):
    """The web framework refused the request (e.g. a malformed multipart body)."""

    code, status = "http_error", 400

    def __init__(self, message: str, *, status: int | None = None):
        # The one failure whose status may be the framework's rather than ours.
        super().__init__(message)
        if status is not None:
            self.status = status


class Unauthorized(AppError):
    """No valid API key came with the request (X-API-Key or Authorization: Bearer)."""

    code, status = "unauthorized", 401


class RequestTimeout(AppError):
    """The request body did not arrive in time (a stalled or very slow client)."""

    code, status = "request_timeout", 408


class NotFound(AppError):
    status = 404


class JobNotFound(NotFound):
    """No such job: it never existed, expired or was deleted."""

    code = "job_not_found"


class BatchNotFound(NotFound):
    """No such batch: it never existed or expired."""

    code = "batch_not_found"


class PictureExpired(NotFound):
    """The job succeeded, but its overlay or heatmap has expired."""

    code = "picture_expired"


class BlobMissing(NotFound):
    """The job has not expired, but a blob it needs is gone from the blob store."""

    code = "blob_missing"


class NoDicomResults(NotFound):
    """The job did not come from the DICOM network (or its header expired): no DICOM results."""

    code = "no_dicom_results"


class UnknownPath(NotFound):
    """No route, picture or static file by that name."""

    code = "not_found"


class MethodNotAllowed(AppError):
    """The route exists, but not for this HTTP method."""

    code, status = "method_not_allowed", 405


class Conflict(AppError):
    status = 409


class JobNotReady(Conflict):
    """The job has not succeeded (yet), so it has no pictures."""

    code = "not_ready"


class IdempotencyKeyInFlight(Conflict):
    """A request with this Idempotency-Key is still being stored; retry shortly."""

    code, retry_after_s = "idempotency_key_in_flight", 1


class PayloadTooLarge(AppError):
    status = 413


class UploadTooLarge(PayloadTooLarge):
    """The request or one of its files exceeds the upload size limit."""

    code = "upload_too_large"


class TooManyPixels(PayloadTooLarge):
    """The image declares more pixels than the service decodes."""

    code = "too_many_pixels"


class UnsupportedMediaType(AppError):
    status = 415


class UnsupportedFormat(UnsupportedMediaType):
    """The file is not a JPEG, PNG or DICOM (judged by its content, not its name)."""

    code = "unsupported_format"


class UnsupportedTransferSyntax(UnsupportedMediaType):
    """The DICOM file's transfer syntax is one this service cannot decode."""

    code = "unsupported_transfer_syntax"


class UnsupportedPhotometric(UnsupportedMediaType):
    """The DICOM photometric interpretation is not MONOCHROME1, MONOCHROME2 or RGB."""

    code = "unsupported_photometric"


class UnsupportedContentType(UnsupportedMediaType):
    """The Content-Type is not one the route takes (STOW-RS: multipart/related of DICOM)."""

    code = "unsupported_content_type"


class Unprocessable(AppError):
    status = 422


class InvalidRequest(Unprocessable):
    """A field or parameter of the request is missing or malformed."""

    code = "invalid_request"


class IdempotencyKeyReused(Unprocessable):
    """The Idempotency-Key was used before for a different request."""

    code = "idempotency_key_reused"


class InvalidImage(Unprocessable):
    """The file is of an accepted type but is no usable radiograph."""


class EmptyFile(InvalidImage):
    """The upload is empty."""

    code = "empty_file"


class CorruptImage(InvalidImage):
    """The image (or the DICOM file, its pixels or its LUT) could not be decoded."""

    code = "corrupt_image"


class ImageTooSmall(InvalidImage):
    """The image is smaller than the model's minimum side."""

    code = "image_too_small"


class DicomWithoutPixels(InvalidImage):
    """The DICOM file holds no image."""

    code = "dicom_without_pixels"


class RateLimited(AppError):
    """The client sent more submissions this minute than it may."""

    code, status = "rate_limited", 429


class Unavailable(AppError):
    # Each says when to try again: the service expects to recover.
    status, retry_after_s = 503, 5


class QueueFull(Unavailable):
    """Too many jobs are waiting; try again shortly."""

    code = "queue_full"


class QueueUnavailable(Unavailable):
    """The job queue is unreachable."""

    code = "queue_unavailable"


class DecodeBusy(Unavailable):
    """Other uploads are using the memory set aside for decoding; try again shortly."""

    code, retry_after_s = "decode_busy", 2


class StoreUnavailable(Unavailable):
    """The job store (Redis) is unreachable."""

    code = "store_unavailable"


class StoreFull(Unavailable):
    """The job store (Redis) is nearly full; new jobs wait until accepted ones finish."""

    code = "store_full"


class BlobStoreUnavailable(Unavailable):
    """The object store holding uploads and pictures is unreachable or refusing requests."""

    code = "blob_store_unavailable"


class UploadMissing(Unavailable):
    """The uploaded image expired before a worker processed it."""

    code = "upload_missing"


class WorkerLost(Unavailable):
    """The job was delivered to workers too many times without finishing."""

    code = "worker_lost"


class PredictionTimeout(AppError):
    """The synchronous prediction is still running; poll its job."""

    code, status, retry_after_s = "timeout", 504, 1
