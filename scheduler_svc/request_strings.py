"""The one check every string of every request passes: encoding, control characters, length.

`string_violations(request)` walks any SchedulerService request message (nested messages,
repeated fields and maps included) and names each bad string by its proto field path. Strings
arrive as valid UTF-8 (protobuf refuses anything else); what remains to refuse is:

- C0 and C1 control characters and DEL (a URL with one was accepted and its run never ended);
  free-text fields listed in ``MULTILINE`` may hold tab and newline;
- strings longer than their field allows (``MAX_CHARS`` by field name, ``DEFAULT_MAX``
  otherwise), so no id, token or name can blow up a key, a log line or an error message.

Meaning (cron syntax, URL shape, zone names, id patterns) is checked by `validation`.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from scheduler_svc.validation import FieldViolation

DEFAULT_MAX = 256
# Field name -> the longest value it takes, in characters.
MAX_CHARS = {
    "name": 200,
    "note": 1000,
    "cron": 200,
    "timezone": 64,
    "urls": 2048,
    "selectors": 1000,  # each CSS selector; names have their own pattern (64 at most)
    "page_token": 512,
    "position": 512,
    "request_id": 128,
}
MULTILINE = frozenset({"note"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _problem(name: str, value: str) -> str | None:
    limit = MAX_CHARS.get(name, DEFAULT_MAX)
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are allowed"
    pattern = _CONTROL_BUT_TEXT if name in MULTILINE else _CONTROL
    found = pattern.search(value)
    if found:
        return (
            f"contains the control character U+{ord(found.group()):04X} at position "
            f"{found.start()}; remove it (or percent-encode it in a URL)"
        )
    return None


def _check(path: str, name: str, value: str, found: list[FieldViolation]) -> None:
    problem = _problem(name, value)
    if problem is not None:
        found.append(FieldViolation(path, problem))


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and entry.GetOptions().map_entry


def _walk_map(path: str, field: FieldDescriptor, value: Any, found: list[FieldViolation]) -> None:
    entry: Any = field.message_type
    value_field = entry.fields_by_name["value"]
    for key, item in value.items():
        key_problem = _problem(field.name, key) if isinstance(key, str) else None
        if key_problem is not None:
            found.append(FieldViolation(path, f"a key {key_problem}"))
            continue
        item_path = f"{path}.{key}"
        if value_field.type == FieldDescriptor.TYPE_STRING:
            _check(item_path, field.name, item, found)
        elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
            _walk(item, item_path, found)


def _walk_field(path: str, field: FieldDescriptor, value: Any, found: list[FieldViolation]) -> None:
    repeated = field.is_repeated
    items = list(enumerate(value)) if repeated else [(None, value)]
    for index, item in items:
        item_path = path if index is None else f"{path}[{index}]"
        if field.type == FieldDescriptor.TYPE_STRING:
            _check(item_path, field.name, item, found)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _walk(item, item_path, found)


def _walk(message: Message, prefix: str, found: list[FieldViolation]) -> None:
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        if _is_map(field):
            _walk_map(path, field, value, found)
        else:
            _walk_field(path, field, value, found)


def string_violations(request: Message) -> list[FieldViolation]:
    """Every string of ``request`` that is too long or holds a control character."""
    found: list[FieldViolation] = []
    _walk(request, "", found)
    return found
