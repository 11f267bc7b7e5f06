"""`campaign_common.runs.keys` is the one owner of the run keys, all in one hash tag."""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_keys_every_run_key_carries_the_hash_tag() -> None:
    built = [
        keys.RUNS_STREAM,
        keys.RUN_EVENTS_STREAM,
        keys.DEAD_LETTER_STREAM,
        keys.DELAYED,
        keys.DELAYED_REQUESTS,
        keys.INDEX_ALL,
        keys.run_key("s:1"),
        keys.dedupe_key("s:1"),
        keys.schedule_index("s"),
        keys.campaign_index("c"),
        keys.emitted_key("s"),
        keys.guard_key("s"),
        keys.campaign_fence_key("c"),
        keys.written_key("s:1", 2),
        keys.results_key("c"),
        keys.new_op_key(),
    ]
    assert all(key.startswith(f"{{{keys.HASH_TAG}}}:") for key in built)
    assert len(set(built)) == len(built)  # no two families share a name


def test_keys_index_members_sort_newest_last_by_nominal_time() -> None:
    members = [keys.index_member(ms, "r") for ms in (9, 10, 1_700_000_000_000)]
    assert members == sorted(members)
