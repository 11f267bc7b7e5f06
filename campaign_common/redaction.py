"""Credentials in URLs are never shown: ``http://user:secret@host/`` reads ``http://***@host/``.

New schedules cannot carry credentials (the scheduler refuses them), but schedules stored
before that rule still do, and scrape errors quote the URL they failed on. Everything that
echoes a URL or an error text to someone (API reads, run errors, dead letters, pause notes,
alerts, log lines) passes it through `redact`; the stored URL itself is kept, so such a
schedule still fetches as it did.
"""

from __future__ import annotations

import re

# scheme "://" userinfo "@": userinfo (RFC 3986) has no "/", "?", "#", "@" or whitespace.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#@\s]*@")
MASK = "***"


def redact(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``."""
    if "@" not in text:
        return text
    return _USERINFO.sub(rf"\1{MASK}@", text)
