"""ACL users on a real test server, with the rules docs/operations.md gives each service.

The rules here are the documented ones, word for word: the tests that run a service as such a
user prove the documented rules are enough for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

# State Redis, scheduler and scraper alike: their keys only, data and script commands, TIME
# (scripts read the server clock), INFO (the version check) and the cluster topology
# commands; nothing @dangerous (FLUSHALL, KEYS, CONFIG, DEBUG ...) and no other keys.
STATE_RULES = [
    "resetkeys",
    "~{runs:*",
    "~{sched}:*",
    "~{scraper}:*",
    "resetchannels",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "+@connection",
    "-@dangerous",
    "+time",
    "+info",
    "+cluster|slots",
    "+cluster|shards",
    "+cluster|nodes",
]
# Lock masters: the Redlock keys; the scripts (EVALSHA, SCRIPT LOAD) and the commands they run
# (a script runs as its caller: GET SET DEL PEXPIRE INCR); PING, INFO, the connection set-up.
LOCK_RULES = [
    "resetkeys",
    "~redlock:*",
    "resetchannels",
    "-@all",
    "+evalsha",
    "+script|load",
    "+get",
    "+set",
    "+del",
    "+pexpire",
    "+incr",
    "+ping",
    "+info",
    "+select",
    "+client|setinfo",
    "+client|setname",
]


@contextlib.contextmanager
def acl_user(port: int, user: str, password: str, rules: list[str]) -> Iterator[None]:
    """``user`` (enabled, ``password``, ``rules``) on the server at ``port``, deleted after."""
    admin = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
        yield
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()
