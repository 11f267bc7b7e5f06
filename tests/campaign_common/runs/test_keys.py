"""`campaign_common.runs.keys` is the one owner of the run keys and their partitions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from redis.asyncio import Redis

from campaign_common.runs import keys

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("campaign_common", "scheduler_svc", "scraper_svc", "gateway")


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant of the code, docstrings left out (prose may name a key)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_keys_no_module_but_keys_spells_a_run_key() -> None:
    owner = Path(keys.__file__).resolve()
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.resolve() != owner
        for line, text in _string_literals(ast.parse(path.read_text()))
        if "{runs" in text
    ]
    assert found == []


def test_keys_every_run_key_carries_its_partitions_hash_tag() -> None:
    for partition in keys.Partitions(3):
        built = [
            partition.runs_stream,
            partition.events_stream,
            partition.dead_stream,
            partition.delayed,
            partition.delayed_requests,
            partition.index_all,
            partition.run_key("s:1"),
            partition.dedupe_key("s:1"),
            partition.schedule_index("s"),
            partition.campaign_index("c"),
            partition.emitted_key("s"),
            partition.guard_key("s"),
            partition.fence_key("c"),
            partition.written_key("s:1", 2),
            partition.results_key("c"),
            partition.new_op_key(),
        ]
        assert all(key.startswith(f"{{runs:{partition.index}}}:") for key in built)
        assert len(set(built)) == len(built)  # no two families share a name


def test_keys_a_campaign_has_one_partition_and_campaigns_spread_over_all() -> None:
    partitions = keys.Partitions(8)
    campaigns = [f"campaign-{i}" for i in range(800)]
    assert [partitions.of(c) for c in campaigns] == [keys.Partitions(8).of(c) for c in campaigns]
    counts = [sum(partitions.of(c) is p for c in campaigns) for p in partitions]
    assert min(counts) > 50, counts  # crc32 spreads them (100 each on average)
    assert {keys.Partitions(1).of(c).index for c in campaigns} == {0}


def test_keys_partitions_group_keeps_positions_per_partition() -> None:
    partitions = keys.Partitions(4)
    campaigns = ["a", "b", "c", "a", "d", "b"]
    grouped = partitions.group(campaigns)
    assert sorted(i for positions in grouped.values() for i in positions) == list(range(6))
    for partition, positions in grouped.items():
        assert all(partitions.of(campaigns[i]) is partition for i in positions)


def test_keys_a_partition_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        keys.Partitions(0)


async def test_keys_check_partition_count_refuses_another_count(state_redis: Redis) -> None:
    await keys.check_partition_count(state_redis, keys.Partitions(4), "X_PARTITIONS")
    await keys.check_partition_count(state_redis, keys.Partitions(4), "X_PARTITIONS")
    with pytest.raises(keys.PartitionCountMismatch, match="X_PARTITIONS=4") as refused:
        await keys.check_partition_count(state_redis, keys.Partitions(2), "X_PARTITIONS")
    assert "X_PARTITIONS=2, but this deployment's runs use 4" in str(refused.value)


def test_keys_index_members_sort_newest_last_by_nominal_time() -> None:
    members = [keys.index_member(ms, "r") for ms in (9, 10, 1_700_000_000_000)]
    assert members == sorted(members)
