"""Scripts re-sent after a lost reply (a real proxy drops it) run once with an operation id."""

from __future__ import annotations

from campaign_common.redis_conn import make_client
from campaign_common.runs.opscript import idempotent, new_op_id, op_key
from tests.faults import TcpProxy

# KEYS[1] counter; ARGV[1] step. Returns the counter after the increment.
_INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def test_opscript_plain_script_runs_twice_when_its_reply_is_lost(proxy: TcpProxy) -> None:
    client = make_client(proxy.url, timeout_s=2.0)
    try:
        script = client.register_script(_INCR)
        await script(keys=["{t}:n"], args=[1])  # loaded, so the next call is one EVALSHA
        proxy.drop_replies(b"EVALSHA")
        assert await script(keys=["{t}:n"], args=[1]) == 3  # ran on the lost try and again
        assert proxy.dropped == 1
    finally:
        await client.aclose()


async def test_opscript_idempotent_script_runs_once_and_repeats_its_first_reply(
    proxy: TcpProxy,
) -> None:
    client = make_client(proxy.url, timeout_s=2.0)
    try:
        script = client.register_script(idempotent(_INCR))
        await script(keys=["{t}:n", op_key("t", new_op_id())], args=[1])
        proxy.drop_replies(b"EVALSHA")
        op = op_key("t", new_op_id())
        assert await script(keys=["{t}:n", op], args=[1]) == 2
        assert proxy.dropped == 1
        assert int(await client.get("{t}:n")) == 2
        assert await script(keys=["{t}:n", op], args=[5]) == 2  # same op: same reply, no change
        assert await script(keys=["{t}:n", op_key("t", new_op_id())], args=[5]) == 7
    finally:
        await client.aclose()


async def test_opscript_idempotent_script_keeps_false_and_tables(state_url: str) -> None:
    client = make_client(state_url, timeout_s=2.0)
    try:
        refuse = client.register_script(idempotent("return false"))
        pair = client.register_script(idempotent("return {1, 'a-1'}"))
        for _ in range(2):
            op_false, op_pair = op_key("t", "f"), op_key("t", "p")
            assert await refuse(keys=[op_false]) is None
            assert await pair(keys=[op_pair]) == [1, b"a-1"]
    finally:
        await client.aclose()
