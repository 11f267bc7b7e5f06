"""Lock tokens: 16 random bytes each, never handed out twice, not shared with a forked child."""

from __future__ import annotations

import os

from campaign_common.redlock.tokens import TOKEN_BYTES, new_token


def test_tokens_are_16_bytes_and_distinct_across_blocks() -> None:
    tokens = [new_token() for _ in range(2000)]  # several blocks of 256
    assert all(len(token) == TOKEN_BYTES == 16 for token in tokens)
    assert len(set(tokens)) == len(tokens)


def test_a_forked_child_draws_tokens_of_its_own() -> None:
    new_token()  # the parent has a block in use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next tokens to the parent and leave at once
        os.close(read)
        os.write(write, b"".join(new_token() for _ in range(8)))
        os._exit(0)
    os.close(write)
    child = b""
    while chunk := os.read(read, 4096):
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    ours = b"".join(new_token() for _ in range(8))
    assert len(child) == len(ours) == 8 * TOKEN_BYTES
    child_tokens = {child[i : i + 16] for i in range(0, len(child), 16)}
    our_tokens = {ours[i : i + 16] for i in range(0, len(ours), 16)}
    assert not child_tokens & our_tokens
