"""Value types several setting groups share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator
from pydantic_settings import NoDecode


def split_comma_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


# NoDecode: the environment holds `k1,k2` (split here), not the JSON pydantic-settings expects.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_comma_list)]
