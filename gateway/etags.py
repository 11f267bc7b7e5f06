"""Request preconditions over HTTP: a schedule's ``ETag`` and ``If-Match``, and the
``Idempotency-Key`` of a create.

A schedule's ETag is its version as a strong entity tag (``"3"``). ``If-Match`` on PUT,
``:pause``, ``:resume`` and DELETE carries the ETag the caller read; the scheduler applies the
change only to that version and answers ``409 ABORTED`` otherwise (as gRPC's
``expected_version``). ``If-Match: *`` or no header: no check. A malformed header is a 400
naming ``If-Match``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header, Response

from gateway.errors import FieldViolation, invalid_argument

_STRONG = re.compile(r'"([1-9][0-9]{0,17})"')

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=64,
        json_schema_extra={"pattern": r'^(\*|"[1-9][0-9]{0,17}")$'},
        description='the schedule\'s ETag as read (e.g. "3"): the change applies only to that '
        "version, else 409 ABORTED",
    ),
]


def etag(version: int) -> str:
    return f'"{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def expected_version(if_match: str | None) -> int:
    """The version ``If-Match`` asks for; 0 when absent, empty (no condition) or ``*``."""
    if if_match is None or if_match.strip() in ("", "*"):
        return 0
    found = _STRONG.fullmatch(if_match.strip())
    if found is None:
        raise invalid_argument(
            [FieldViolation("If-Match", 'must be one strong ETag of the schedule (e.g. "3") or *')],
            "invalid If-Match header",
        )
    return int(found.group(1))


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        json_schema_extra={"pattern": r"^[\u0021-\u007e]+$"},
        description="a retry of a create with the same key within an hour answers the "
        "schedule the first call created (the body's requestId, said as a header)",
    ),
]


def request_id(header: str | None, body_value: str | None) -> str:
    """The create's request id: the header or the body's requestId (they must agree)."""
    if header is not None and body_value is not None and header != body_value:
        raise invalid_argument(
            [FieldViolation("Idempotency-Key", "differs from the body's requestId; send one")],
            "conflicting idempotency keys",
        )
    return header or body_value or ""
