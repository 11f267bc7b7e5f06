"""A response body as the scraper reads it: capped, decompressed, decoded to text.

The fetcher asks for ``gzip`` and ``deflate`` (`ACCEPT_ENCODING`) and decodes what comes back
with that ``Content-Encoding`` while it streams; the cap applies to the decoded bytes, and a
compressed body stops inflating as soon as it passes the cap (a small body that inflates to
gigabytes costs at most the cap). ``identity`` or no encoding is read as is; any other encoding
(not asked for) is an error naming it. Text is decoded with the ``charset`` of the
``Content-Type``, UTF-8 without one or for a charset Python does not know, undecodable bytes
replaced.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable

from scraper_svc.errors import FetchError

ACCEPT_ENCODING = b"gzip, deflate"
Headers = list[tuple[bytes, bytes]]


def header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of ``name`` (lower case; h11 hands names over in lower case)."""
    for key, value in headers:
        if key == name:
            return value
    return None


def charset(headers: Headers) -> str | None:
    """The ``charset`` parameter of the Content-Type header, if any."""
    content_type = header(headers, b"content-type")
    if not content_type:
        return None
    for parameter in content_type.split(b";")[1:]:
        name, _, value = parameter.partition(b"=")
        if name.strip().lower() == b"charset":
            return value.strip().strip(b"\"'").decode("latin-1").lower() or None
    return None


def decode_text(body: bytes, charset_name: str | None) -> str:
    try:
        return body.decode(charset_name or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


class _Inflater:
    """gzip or deflate, inflated at most ``limit`` bytes per piece. A ``deflate`` body is
    zlib-wrapped by the standard, raw in the wild: the first piece decides (as browsers do)."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._raw_fallback = encoding == "deflate"
        wbits = zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(wbits)

    def feed(self, data: bytes, limit: int) -> bytes:
        try:
            out = self._inflater.decompress(data, limit)
        except zlib.error as exc:
            if not self._raw_fallback:
                raise FetchError(f"the {self._encoding} body does not decode: {exc}") from exc
            self._raw_fallback = False
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.feed(data, limit)
        self._raw_fallback = False
        return out

    def finish(self) -> bytes:
        try:
            return self._inflater.flush()
        except zlib.error as exc:
            raise FetchError(f"the {self._encoding} body does not decode: {exc}") from exc


def _inflater(headers: Headers) -> _Inflater | None:
    value = header(headers, b"content-encoding")
    encoding = (value or b"").decode("latin-1").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflater("deflate" if encoding == "deflate" else "gzip")
    raise FetchError(f"unsupported content-encoding {encoding!r} (asked for gzip or deflate)")


async def read_body(
    headers: Headers, stream: AsyncIterable[bytes], cap: int, too_large: FetchError
) -> bytes:
    """The decoded body of ``stream``; ``too_large`` is raised once it passes ``cap`` bytes."""
    inflater = _inflater(headers)
    body = bytearray()
    async for chunk in stream:
        body += chunk if inflater is None else inflater.feed(chunk, cap + 1 - len(body))
        if len(body) > cap:
            raise too_large
    if inflater is not None:
        body += inflater.finish()
        if len(body) > cap:
            raise too_large
    return bytes(body)
