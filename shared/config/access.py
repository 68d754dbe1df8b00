"""Who may call the gateway and how often: API keys, trusted proxies, CORS, rate limits, and
answering a repeated image from its earlier job."""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, Field, field_validator

from shared.config.values import CommaList

# What a key's name may be: it lands in logs and metric labels.
KEY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


class AccessSettings(BaseModel):
    api_keys: CommaList = Field(
        (),
        description="Comma-separated keys accepted in `X-API-Key` or `Authorization: Bearer`, "
        "each `name:key` or a plain `key`; empty: no key is asked for. With keys, each job "
        "belongs to the key that made it: other keys get 404 for it. Logs and metrics show the "
        "name (a plain key is named `key-` and a few hex digits of its digest), never the key.",
    )
    trusted_proxies: CommaList = Field(
        (),
        description="Comma-separated addresses or networks (`10.0.0.0/8`) of reverse proxies "
        "whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed; empty: none are, so a "
        "client cannot pick its own rate-limit and idempotency scope.",
    )
    cors_origins: CommaList = Field(
        (), description="Comma-separated origins browsers may call from; empty: CORS off."
    )
    rate_limit_per_minute: int = Field(
        0,
        ge=0,
        description="Submissions per client (API key, else address) per minute, 429 beyond; "
        "0 turns the limit off.",
    )
    dedupe_results: bool = Field(
        False,
        description="Answer a client's repeated image (same bytes, method and live model) with "
        "its earlier succeeded job instead of computing it again.",
    )

    @field_validator("api_keys")
    @classmethod
    def _names_are_unique(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        names = [name for name, _ in (split_named_key(entry) for entry in entries)]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"API key names must be unique; repeated: {', '.join(repeated)}")
        return entries

    @property
    def named_api_keys(self) -> dict[str, str]:
        """name -> key, in the order configured."""
        return dict(split_named_key(entry) for entry in self.api_keys)


def split_named_key(entry: str) -> tuple[str, str]:
    """`name:key` -> (name, key); a plain key (or one whose text before a colon is no name)
    is named from its digest, so logs can tell keys apart without showing one."""
    name, colon, key = entry.partition(":")
    if colon and KEY_NAME.fullmatch(name):
        if not key:
            raise ValueError(f"The API key named {name!r} is empty.")
        return name, key
    return f"key-{hashlib.sha256(entry.encode()).hexdigest()[:8]}", entry
