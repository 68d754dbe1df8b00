"""The DICOM network: who may send studies to the listener, and where results go back (C-STORE
or STOW-RS), with what retries."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator, model_validator

from shared.config.values import CommaList

# Where results go by C-STORE: AE title (1-16 characters, no backslash) @ host : port.
DICOM_DESTINATION = re.compile(r"[ -\[\]-~]{1,16}@[A-Za-z0-9.:\[\]_-]+:[0-9]{1,5}")
# DICOM PS3.5 AE: up to 16 characters of the default repertoire, no backslash or control codes.
AE_TITLE = re.compile(r"[ -\[\]-~]{1,16}")


class DicomSettings(BaseModel):
    dicom_allowed_aets: CommaList = Field(
        (),
        description="Comma-separated calling AE titles `pneumo dicom-listener` accepts "
        "associations from; others are rejected at association (calling AE title not "
        "recognised). Empty: any caller is accepted, and the listener warns so at start-up.",
    )
    dicom_api_key_name: str = Field(
        "",
        description="With API keys on, the name of the key (in `api_keys`) that owns the jobs "
        "`pneumo dicom-listener` makes, so that key can poll them and fetch their results over "
        "HTTP. Empty: no key sees them (their results still go to the PACS).",
    )
    dicom_destination: str = Field(
        "",
        description="Where DICOM results (SR + Secondary Capture) of jobs from the DICOM network "
        "are sent by C-STORE: `AET@host:port` of the PACS. Empty: not by DIMSE. Set at most one "
        "of this and `dicomweb_destination`; `pneumo dicom-delivery` sends.",
    )
    dicomweb_destination: str = Field(
        "",
        description="Where those results are sent by STOW-RS instead: the DICOMweb base URL "
        "(they are POSTed to `{url}/studies`). Empty: not by DICOMweb.",
    )
    delivery_ae_title: str = Field(
        "PNEUMO", description="The calling AE title DICOM results are sent from."
    )
    delivery_queue_name: str = Field(
        "pneumo-delivery", description="The Celery queue of job ids whose results to send."
    )
    delivery_attempts: int = Field(
        6, ge=1, description="Tries to send a job's results before its delivery is `failed`."
    )
    delivery_backoff_s: float = Field(
        2.0,
        gt=0,
        description="Wait before the second try; doubled for each further one, up to "
        "`delivery_backoff_max_s`.",
    )
    delivery_backoff_max_s: float = Field(
        300.0, gt=0, description="The longest wait between two tries."
    )
    delivery_timeout_s: float = Field(
        30.0, gt=0, description="Network timeout of one try (association, C-STORE, HTTP)."
    )
    delivery_poll_s: float = Field(
        0.5,
        gt=0,
        description="How often a delivery looks again whether its job has finished; sets the "
        "least delay from result to PACS.",
    )

    @field_validator("dicom_allowed_aets")
    @classmethod
    def _ae_titles_are_valid(cls, titles: tuple[str, ...]) -> tuple[str, ...]:
        for title in titles:
            if not AE_TITLE.fullmatch(title):
                raise ValueError(
                    f"AE title {title!r} is not 1-16 printable ASCII characters without a "
                    "backslash."
                )
        return titles

    @field_validator("dicom_destination")
    @classmethod
    def _destination_is_aet_at_host_port(cls, value: str) -> str:
        if value and not DICOM_DESTINATION.fullmatch(value):
            raise ValueError(f"dicom_destination {value!r} is not AET@host:port.")
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> DicomSettings:
        if self.dicom_destination and self.dicomweb_destination:
            raise ValueError("Set dicom_destination or dicomweb_destination, not both.")
        return self
