"""One settings object for every process, read from `PNEUMO_*` environment variables.

`Settings` is put together from one group per concern, each in its own module: `storage`
(Redis, the broker, object storage), `intake` (what the gateway accepts and how long it
waits), `serving` (the workers), `access` (keys, proxies, rate limits) and `dicom` (the DICOM
network). docs/configuration.md lists them in that order (`python -m shared.reference_docs`).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config.access import AccessSettings, split_named_key
from shared.config.dicom import AE_TITLE, DicomSettings
from shared.config.intake import IntakeSettings
from shared.config.serving import REPO_ROOT, ServingSettings
from shared.config.storage import StorageSettings

__all__ = ["AE_TITLE", "REPO_ROOT", "Settings", "get_settings", "split_named_key"]


# pydantic takes the fields of the last base first: the groups are listed in reverse.
class Settings(
    DicomSettings, AccessSettings, ServingSettings, IntakeSettings, StorageSettings, BaseSettings
):
    """Frozen so a value read at start-up cannot drift while the process runs."""

    model_config = SettingsConfigDict(env_prefix="PNEUMO_", frozen=True, extra="ignore")

    @model_validator(mode="after")
    def _dicom_key_is_configured(self) -> Settings:
        if self.dicom_api_key_name and self.dicom_api_key_name not in self.named_api_keys:
            raise ValueError(
                f"dicom_api_key_name {self.dicom_api_key_name!r} names no key in api_keys."
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once per process; tests build `Settings(...)` directly instead."""
    return Settings()
