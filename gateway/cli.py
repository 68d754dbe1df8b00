"""`pneumo gateway`: the HTTP gateway's command, offered by `pneumo` where FastAPI is installed."""

from __future__ import annotations

from typing import Annotated

import typer


def gateway(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Gateway processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP gateway (uvicorn --factory gateway.app:create_app): API, web page at /,
    docs at /docs.

    Configured by PNEUMO_* environment variables (PNEUMO_REDIS_URL, PNEUMO_API_KEYS, ...).
    """
    import uvicorn

    from gateway.http_protocol import PROTOCOL_PATH

    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1; the gateway
    # believes only PNEUMO_TRUSTED_PROXIES (gateway.security).
    uvicorn.run("gateway.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, proxy_headers=False, http=PROTOCOL_PATH)  # fmt: skip


def dicom_listener(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 11112,
    ae_title: Annotated[str, typer.Option(help="This listener's AE title.")] = "PNEUMO",
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run the DICOM listener (C-STORE SCP): CR and DX images become jobs, as uploads do.

    Callers limited by PNEUMO_DICOM_ALLOWED_AETS; the store, queue and limits are the
    gateway's PNEUMO_* settings.
    """
    import logging

    from gateway.dicom_listener import DicomListener
    from shared.config import AE_TITLE, get_settings

    if not AE_TITLE.fullmatch(ae_title):
        raise typer.BadParameter(
            "1-16 printable ASCII characters, no backslash.", param_hint="--ae-title"
        )
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    DicomListener(get_settings(), ae_title).serve(host, port)


def dicom_delivery(
    concurrency: Annotated[int, typer.Option(min=1, help="Deliveries in flight.")] = 4,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Send the DICOM results (SR + Secondary Capture) of jobs from the DICOM network to the
    PACS in PNEUMO_DICOM_DESTINATION (C-STORE) or PNEUMO_DICOMWEB_DESTINATION (STOW-RS), with
    retries (gateway.dicom_delivery)."""
    from gateway.dicom_delivery import run
    from shared.config import get_settings

    run(get_settings(), concurrency, log_level)


def register_commands(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
    app.command("dicom-delivery")(dicom_delivery)
    app.command("dicom-listener")(dicom_listener)
