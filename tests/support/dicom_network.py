"""A DICOM sender for tests: real pynetdicom associations to a listener, and the way back from
an instance to the job it became (the job's `dicom_header` blob names the instance)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence

import numpy as np
import pydicom
import redis
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from shared.dicom_header import SOURCE_HEADER_BLOB, parse_source_header
from tests.support.dicoms import DicomSpec, dicom_file, ramp

COMPUTED_RADIOGRAPHY = UID("1.2.840.10008.5.1.4.1.1.1")
DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
DX_FOR_PROCESSING = UID("1.2.840.10008.5.1.4.1.1.1.1.1")
CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
SCU_AE_TITLE = "TESTSCU"


def radiograph(
    sop_class: UID = COMPUTED_RADIOGRAPHY, study: str | None = None, seed: int = 0
) -> Dataset:
    """A 12-bit film of `sop_class` with a patient's identifiers (`tests.support.dicoms`)."""
    pixels = (np.rint(ramp(160, 128)) * 16).astype("uint16")
    pixels[seed % 160, :] = 4095  # instances differ in their pixels too
    extra = {
        "SOPClassUID": sop_class,
        "StudyInstanceUID": study or generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "Modality": "CR" if sop_class == COMPUTED_RADIOGRAPHY else "DX",
    }
    data = dicom_file(DicomSpec(pixels, bits_stored=12, extra=extra))
    return pydicom.dcmread(io.BytesIO(data))


def related_body(parts: Sequence[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A STOW-RS request body of (content type, bytes) parts, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    chunks = [
        b"--%s\r\nContent-Type: %s\r\n\r\n%s\r\n" % (boundary.encode(), kind.encode(), data)
        for kind, data in parts
    ]
    body = b"".join(chunks) + b"--%s--\r\n" % boundary.encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
SOP_CLASSES = (COMPUTED_RADIOGRAPHY, DX_FOR_PRESENTATION, DX_FOR_PROCESSING, CT_IMAGE)


def associate(port: int, calling: str = SCU_AE_TITLE, called: str = "PNEUMO",
              syntaxes: Sequence[str] = UNCOMPRESSED,
              sop_classes: Sequence[str] = SOP_CLASSES) -> Association:  # fmt: skip
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    for sop_class in sop_classes:  # one context per syntax: each is accepted or not alone
        for syntax in syntaxes:
            ae.add_requested_context(sop_class, syntax)
    return ae.associate("127.0.0.1", port, ae_title=called)


def store_all(port: int, datasets: Sequence[Dataset], **association: object) -> list[Dataset]:
    """C-STORE each dataset over one association; the response statuses, in order."""
    assoc = associate(port, **association)  # type: ignore[arg-type]
    assert assoc.is_established, "the listener refused the association"
    try:
        return [assoc.send_c_store(dataset) for dataset in datasets]
    finally:
        assoc.release()


def jobs_by_instance(client: redis.Redis, prefix: str = "pneumo") -> dict[str, str]:
    """SOP Instance UID -> job id, for every job that keeps a source header."""
    found = {}
    for key in client.scan_iter(f"{prefix}:blob:*:{SOURCE_HEADER_BLOB}"):
        header = client.get(key)
        if header is not None:
            job_id = key.decode().split(":")[-2]
            found[str(parse_source_header(header).SOPInstanceUID)] = job_id
    return found
