"""What the DICOM network paths share: which instances they take, and what each refusal is
called in DICOM. The DIMSE listener (`gateway.dicom_listener`) answers a C-STORE with these
statuses and STOW-RS (`gateway.routes.dicomweb`) lists them as FailureReason; behind both is
the HTTP upload's intake (`gateway.submission.submit_dicom`): same limits, errors, overload.

Statuses are PS3.4 Table B.2-1 (C-STORE) and PS3.18 Table 10.5.3-1 (STOW-RS), which share
their codes. A refusal's comment is our error code and message, which never quote a tag.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import IntEnum

from pydicom.uid import UID
from redis.exceptions import OutOfMemoryError, RedisError

from gateway.submission import Intake, enforce_rate_limit, submit_dicom
from shared.dicom import PYDICOM_FAILURES, looks_like_dicom, read_dataset
from shared.errors import (
    AppError,
    CorruptImage,
    StoreFull,
    StoreUnavailable,
    UnsupportedFormat,
)
from shared.schemas import Job

COMPUTED_RADIOGRAPHY = UID("1.2.840.10008.5.1.4.1.1.1")
DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
DX_FOR_PROCESSING = UID("1.2.840.10008.5.1.4.1.1.1.1.1")
ACCEPTED_SOP_CLASSES = (COMPUTED_RADIOGRAPHY, DX_FOR_PRESENTATION, DX_FOR_PROCESSING)


class Status(IntEnum):
    SUCCESS = 0x0000
    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


# Our refusals by HTTP status: too big, too many, or too busy is a lack of resources (the
# sender may try again later, or elsewhere); a file we cannot read is not understood.
STATUS_BY_HTTP_STATUS = {
    413: Status.OUT_OF_RESOURCES,
    429: Status.OUT_OF_RESOURCES,
    503: Status.OUT_OF_RESOURCES,
    415: Status.CANNOT_UNDERSTAND,
    422: Status.CANNOT_UNDERSTAND,
}
STATUS_BY_CODE = {"unsupported_transfer_syntax": Status.TRANSFER_SYNTAX_NOT_SUPPORTED}


@dataclass(frozen=True)
class Identity:
    """Which instance it is, as the sender named it: what STOW-RS answers per instance."""

    sop_class: str
    sop_instance: str
    study_instance: str | None = None  # None where the dataset names no study


class Refused(Exception):
    """An instance that became no job: its DICOM status and a tag-free comment."""

    def __init__(self, status: Status, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code  # ours (`shared.errors`), or the DICOM refusal's own name
        self.comment = f"{code}: {message}"

    @classmethod
    def from_error(cls, error: AppError) -> Refused:
        status = STATUS_BY_CODE.get(error.code) or STATUS_BY_HTTP_STATUS.get(
            error.status, Status.PROCESSING_FAILURE
        )
        return cls(status, error.code, error.message)


def identify(data: bytes) -> Identity:
    """The SOP class and instance the dataset names; `Refused` if it names none (a Part 10
    file or a bare dataset, as `shared.dicom` reads them)."""
    if not looks_like_dicom(data):
        raise Refused.from_error(UnsupportedFormat("The instance is not DICOM."))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            header = read_dataset(data, stop_before_pixels=True)
            study = header.get("StudyInstanceUID")
            identity = Identity(
                str(header.SOPClassUID), str(header.SOPInstanceUID), str(study) if study else None
            )
        except AppError as error:
            raise Refused.from_error(error) from None
        except PYDICOM_FAILURES as error:  # SOPClassUID or SOPInstanceUID missing
            failure = CorruptImage(
                f"The instance names no SOP class or instance ({type(error).__name__})."
            )
            raise Refused.from_error(failure) from None
    return identity


def check_sop_class(identity: Identity, negotiated: str | None = None) -> None:
    """Radiographs only (CR, DX for presentation or processing); under DIMSE the dataset
    must also be of the SOP class its C-STORE request names."""
    if negotiated is not None and identity.sop_class != negotiated:
        raise Refused(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            "sop_class_mismatch",
            "The dataset's SOP Class UID is not the one the request names.",
        )
    if identity.sop_class not in ACCEPTED_SOP_CLASSES:
        raise Refused(
            Status.SOP_CLASS_NOT_SUPPORTED,
            "sop_class_not_supported",
            "Only CR and DX images are taken.",
        )


async def take_instance(
    data: bytes, intake: Intake, negotiated: str | None = None, *, counted: bool = False
) -> Job:
    """One instance becomes a queued job, or `Refused` says why in DICOM's terms. Each one
    counts against the sender's rate limit, unless it was `counted` already (the first of a
    STOW-RS request, counted as the request by `gateway.security.Guard`)."""
    check_sop_class(identify(data), negotiated)
    try:
        if not counted:
            await enforce_rate_limit(intake)
        return await submit_dicom(data, intake)
    except AppError as error:
        raise Refused.from_error(error) from None
    except OutOfMemoryError:  # as the HTTP routes answer it (`gateway.app`)
        raise Refused.from_error(StoreFull("The job store is full.")) from None
    except RedisError:
        raise Refused.from_error(StoreUnavailable("The job store is unavailable.")) from None
