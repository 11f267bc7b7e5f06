"""Opaque page tokens: the position after the last item of a page, base64url-encoded."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from campaign_common.errors import CampaignCommonError

_INVALID = "page token is not valid; pass the nextPageToken of the previous page"


class InvalidPageToken(CampaignCommonError, ValueError):
    """A page token that this service did not issue."""


def encode_page_token(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_page_token(token: str, valid: Callable[[str], bool] = bool) -> str:
    """The position in ``token``; InvalidPageToken unless it decodes and ``valid`` accepts it."""
    try:
        position = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, ValueError) as exc:
        raise InvalidPageToken(_INVALID) from exc
    if not valid(position):
        raise InvalidPageToken(_INVALID)
    return position
