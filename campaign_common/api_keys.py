"""API keys as every service takes them: parsed from one setting, compared in constant time.

A key setting (``GATEWAY_API_KEYS``, ``SCHEDULER_API_KEYS``, ``*_METRICS_KEYS``) holds a JSON
list (``["k1","k2"]``) or a comma-separated string (``k1,k2``); empty means no key is asked
for. Keys are secrets: a malformed setting is reported without its content, and the settings
classes keep them as ``SecretStr`` with ``hide_input_in_errors``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Annotated

from pydantic import BeforeValidator, SecretStr
from pydantic_settings import NoDecode

BEARER_PREFIX = "bearer "


def split_keys(value: object) -> object:
    """A JSON list or a comma-separated string of keys, as a list (anything else unchanged).

    A malformed JSON list is reported without its content (it holds secrets).
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("is not a valid JSON list of keys (content not shown)") from None
    return [key.strip() for key in text.split(",") if key.strip()]


# The type of a key-list setting: read raw from the environment, then split.
KeyList = Annotated[list[SecretStr], NoDecode, BeforeValidator(split_keys)]


def key_bytes(keys: Sequence[SecretStr]) -> list[bytes]:
    return [key.get_secret_value().encode() for key in keys]


def token_matches(given: str | bytes, keys: Sequence[bytes]) -> bool:
    """Whether ``given`` is one of ``keys``; every key is compared, each in constant time."""
    candidate = given.encode() if isinstance(given, str) else given
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return bool(candidate) and matched


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` value; empty if it is not one."""
    if header[: len(BEARER_PREFIX)].lower() != BEARER_PREFIX:
        return ""
    return header[len(BEARER_PREFIX) :].strip()
