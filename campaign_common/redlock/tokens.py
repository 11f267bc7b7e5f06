"""Lock tokens: 16 random bytes per acquisition attempt, from the OS's CSPRNG.

`secrets.token_bytes` asks the kernel once per token (a system call per attempt). `new_token`
takes tokens from a block of random bytes asked for at once and hands them out in order; each
token is still 16 bytes of `os.urandom` that no other token shares. A forked child starts
from a fresh block, so parent and child never hand out the same token.
"""

from __future__ import annotations

import os

TOKEN_BYTES = 16
_BLOCK_BYTES = TOKEN_BYTES * 256


class _Block:
    data = b""
    next = 0


def new_token() -> bytes:
    """``TOKEN_BYTES`` random bytes no other token shares."""
    start = _Block.next
    if start + TOKEN_BYTES > len(_Block.data):
        _Block.data, start = os.urandom(_BLOCK_BYTES), 0
    _Block.next = start + TOKEN_BYTES
    return _Block.data[start : start + TOKEN_BYTES]


def _discard_block() -> None:
    """After a fork: the parent hands out the rest of the block, the child draws its own."""
    _Block.data, _Block.next = b"", 0


os.register_at_fork(after_in_child=_discard_block)
