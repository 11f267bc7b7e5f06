"""The services' gauges arranged for the health page: label tables, owners, headline totals."""

from __future__ import annotations

from gateway.ui.gauges import Headline, Row, arrange, headline, parse


def _family(name: str, help_text: str, samples: dict[str, float], kind: str = "gauge") -> str:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {value}" for labels, value in samples.items()]
    return "\n".join(lines) + "\n"


PARTITIONED = (
    _family(
        "campaigns_runs_lag",
        "Run requests not yet delivered",
        {'{partition="0"}': 3, '{partition="1"}': 0, '{partition="2"}': 4, '{partition="10"}': 1},
    )
    + _family(
        "campaigns_runs_pending",
        "Delivered, not yet acknowledged",
        {'{partition="0"}': 1, '{partition="1"}': 2, '{partition="2"}': 0},
    )
    + _family(
        "campaigns_scheduler_partition_owned",
        "1 for each partition a replica owns",
        {
            '{partition="0",replica="sched-a"}': 1,
            '{partition="1",replica="sched-b"}': 1,
            '{partition="10",replica="sched-a"}': 1,
            '{partition="10",replica="sched-b"}': 1,  # a handover seen half-way
            '{partition="2",replica="sched-b"}': 0,
        },
    )
    + _family("campaigns_dead_letters", "Dead letters", {"": 5})
    + _family("campaigns_scheduler_replicas_seen", "Replicas alive", {"": 2})
    + _family(
        "campaigns_scheduler_loop_up",
        "Background loops",
        {'{loop="stream-gauges"}': 1, '{loop="log-follower"}': 0},
    )
    + _family("campaigns_fires_created", "When the counter was created", {"": 1.7e9})
    + _family("campaigns_fires_total", "Fires", {'{partition="0"}': 9}, kind="counter")
    + _family("campaigns_weird", "Two labels", {'{partition="0",kind="x"}': 7})
)


def test_gauges_that_share_the_partition_label_make_one_table_with_owners() -> None:
    tables, others = arrange(parse(PARTITIONED))
    assert [table.label for table in tables] == ["partition", "loop"], "partition first"
    partitions = tables[0]
    assert [name for name, _ in partitions.columns] == [
        "campaigns_runs_lag",
        "campaigns_runs_pending",
    ]
    assert partitions.columns[0][1] == "Run requests not yet delivered"
    assert partitions.rows == (
        Row("0", (3, 1), ("sched-a",)),
        Row("1", (0, 2), ("sched-b",)),
        Row("2", (4, 0), ()),
        Row("10", (1, None), ("sched-a", "sched-b")),
    ), "numeric order; a partition without a pending series shows none; 0 is not owning"
    assert partitions.with_owners
    assert partitions.owned == {"sched-a": ("0", "10"), "sched-b": ("1", "10")}
    assert [row.key for row in tables[1].rows] == ["log-follower", "stream-gauges"]
    assert not tables[1].with_owners
    assert [(g.name, g.label_text) for g in others] == [
        ("campaigns_dead_letters", ""),
        ("campaigns_scheduler_replicas_seen", ""),
        ("campaigns_weird", "kind=x, partition=0"),
    ], "counters, creation times and the ownership series are not listed again"


def test_gauges_headline_totals_are_summed_over_the_partitions() -> None:
    figures = headline([parse(PARTITIONED)])
    assert figures == [
        Headline("Queue lag (run requests not yet delivered)", 8),
        Headline("Pending (delivered, not yet acknowledged)", 3),
        Headline("Dead letters", 5),
        Headline("Scheduler replicas alive (last 30 s)", 2),
        Headline("Partitions owned by a scheduler replica", 3, 4),
    ]


def test_gauges_unlabelled_as_before_partitions() -> None:
    text = (
        _family("campaigns_runs_lag", "Lag", {"": 7})
        + _family("campaigns_runs_pending", "Pending", {"": 2})
        + _family("campaigns_scraper_workers_seen", "Workers", {"": 3})
    )
    gauges = parse(text)
    tables, others = arrange(gauges)
    assert tables == [] and [g.name for g in others] == [g.name for g in gauges]
    assert [(h.label, h.value, h.of) for h in headline([gauges])] == [
        ("Queue lag (run requests not yet delivered)", 7, None),
        ("Pending (delivered, not yet acknowledged)", 2, None),
        ("Scraper workers seen in the last minute", 3, None),
    ]


def test_gauges_lock_masters_reachable_of_those_probed() -> None:
    scraper = parse(
        _family("campaigns_lock_masters_reachable", "Reachable", {"": 2})
        + _family(
            "campaigns_lock_master_up",
            "Up",
            {'{master="0"}': 0, '{master="1"}': 1, '{master="2"}': 1},
        )
    )
    scheduler = parse(_family("campaigns_runs_lag", "Lag", {'{partition="0"}': 1}))
    assert headline([scheduler, scraper]) == [
        Headline("Queue lag (run requests not yet delivered)", 1),
        Headline("Lock masters reachable", 2, 3),
    ], "each figure from the source that exports it; no ownership, no partitions figure"
    [masters], _ = arrange(scraper)
    assert masters.label == "master" and not masters.with_owners
    assert [(row.key, row.values) for row in masters.rows] == [
        ("0", (0,)),
        ("1", (1,)),
        ("2", (1,)),
    ]


def test_gauges_only_campaigns_gauges_are_read() -> None:
    text = _family("process_open_fds", "fds", {"": 12}) + _family(
        "campaigns_build_info", "build", {'{version="1"}': 1}
    )
    assert parse(text) == []
