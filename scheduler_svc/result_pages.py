"""Pages of a campaign's scrape results, newest first, with page tokens like every list.

The results are a capped list with the newest at the head: new results push older ones to
higher indexes and the cap drops the oldest at the tail, so an index alone would repeat or skip
results between two pages. A token holds the index of the last result returned and its
fingerprint; the next page looks for that result from its old index on (it can only have moved
towards the tail) and continues after it. Once it has been dropped by the cap, so has
everything older: the next page is empty and last. The search reads at most the capped list.
"""

from __future__ import annotations

import hashlib
import re

from campaign_common.page_tokens import decode_page_token, encode_page_token
from campaign_common.runs.log import RunLog
from campaigns.v1 import run_pb2

_POSITION = re.compile(r"(\d{1,9}):([0-9a-f]{16})")
_SCAN_CHUNK = 200
_MAX_SCAN = 100_000  # far beyond any results cap; bounds a token's search


def _fingerprint(result: run_pb2.ScrapeResult) -> str:
    blob = result.SerializeToString(deterministic=True)
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


async def _resume_index(runs: RunLog, campaign_id: str, index: int, fingerprint: str) -> int:
    """Index just after the result of ``fingerprint`` (at ``index`` or later); -1: gone."""
    start = index
    while start < index + _MAX_SCAN:
        chunk = await runs.list_results(campaign_id, _SCAN_CHUNK, start)
        for offset, result in enumerate(chunk):
            if _fingerprint(result) == fingerprint:
                return start + offset + 1
        if len(chunk) < _SCAN_CHUNK:
            return -1
        start += _SCAN_CHUNK
    return -1


async def results_page(
    runs: RunLog, campaign_id: str, page_size: int, page_token: str
) -> tuple[list[run_pb2.ScrapeResult], str]:
    """One page of results and the token of the next ("" on the last page).

    Raises InvalidPageToken for a token this service did not issue.
    """
    start = 0
    if page_token:
        position = decode_page_token(page_token, lambda text: bool(_POSITION.fullmatch(text)))
        index, fingerprint = position.split(":")
        start = await _resume_index(runs, campaign_id, int(index), fingerprint)
        if start < 0:
            return [], ""
    found = await runs.list_results(campaign_id, page_size + 1, start)
    page = found[:page_size]
    if len(found) <= page_size:
        return page, ""
    last = start + len(page) - 1
    return page, encode_page_token(f"{last}:{_fingerprint(page[-1])}")
