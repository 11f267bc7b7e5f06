"""The ``campaigns_*`` gauges of a Prometheus text exposition, arranged for the health page.

A gauge with one label (``campaigns_runs_lag{partition="3"}``, ``campaigns_lock_master_up
{master="0"}``) joins the other gauges with that label in one `LabelTable`: a row per label
value, a column per gauge. The partition table also names the scheduler replica that owns each
partition (``campaigns_scheduler_partition_owned{partition, replica}`` = 1), and which
partitions each replica owns. Headline figures are summed over a gauge's labels, so they read
the same whether a service exports one unlabelled total or one series per partition. Gauges
with several labels are listed as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

PREFIX = "campaigns_"
SKIPPED_SUFFIXES = ("_created", "_info")  # when a counter was created, build info
PARTITION = "partition"
OWNED = "campaigns_scheduler_partition_owned"
LOCK_MASTER_UP = "campaigns_lock_master_up"
# Shown first, in this order, when a service exports them (summed over their labels).
HEADLINE = (
    ("campaigns_runs_lag", "Queue lag (run requests not yet delivered)"),
    ("campaigns_runs_pending", "Pending (delivered, not yet acknowledged)"),
    ("campaigns_dead_letters", "Dead letters"),
    ("campaigns_retry_queue_waiting", "Retries waiting"),
    ("campaigns_lock_masters_reachable", "Lock masters reachable"),
    ("campaigns_scraper_workers_seen", "Scraper workers seen in the last minute"),
    ("campaigns_scheduler_replicas_seen", "Scheduler replicas alive (last 30 s)"),
)


@dataclass(frozen=True)
class Gauge:
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted by label name
    value: float
    help: str

    @property
    def label_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels)


@dataclass(frozen=True)
class Row:
    key: str  # the label's value
    values: tuple[float | None, ...]  # one per column; None: not exported for this row
    owners: tuple[str, ...] = ()  # partition rows: the replicas that own it


@dataclass(frozen=True)
class LabelTable:
    label: str
    columns: tuple[tuple[str, str], ...]  # (gauge name, help)
    rows: tuple[Row, ...]
    owned: dict[str, tuple[str, ...]] = field(default_factory=dict)  # replica -> partitions

    @property
    def with_owners(self) -> bool:
        return self.label == PARTITION and bool(self.owned or any(r.owners for r in self.rows))


@dataclass(frozen=True)
class Headline:
    label: str
    value: float
    of: float | None = None  # "2 of 3"


def parse(text: str) -> list[Gauge]:
    """Every ``campaigns_*`` gauge sample of a Prometheus text exposition."""
    found: list[Gauge] = []
    for family in text_string_to_metric_families(text):
        if family.type != "gauge" or not family.name.startswith(PREFIX):
            continue
        if family.name.endswith(SKIPPED_SUFFIXES):
            continue
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.append(Gauge(sample.name, labels, sample.value, family.documentation))
    return found


def _sort_key(value: str) -> tuple[int, int, str]:
    """Numeric label values in numeric order (partition 2 before 10), then the others."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def _owners(gauges: Iterable[Gauge]) -> dict[str, list[str]]:
    """partition -> the replicas that own it now."""
    owners: dict[str, list[str]] = defaultdict(list)
    for gauge in gauges:
        labels = dict(gauge.labels)
        if gauge.name == OWNED and PARTITION in labels:
            owners.setdefault(labels[PARTITION], [])
            if gauge.value > 0:
                owners[labels[PARTITION]].append(labels.get("replica", "?"))
    return owners


def _table(label: str, gauges: list[Gauge], owners: dict[str, list[str]]) -> LabelTable:
    columns = tuple(dict.fromkeys((g.name, g.help) for g in gauges))
    cells: dict[str, dict[str, float]] = defaultdict(dict)
    for gauge in gauges:
        cells[gauge.labels[0][1]][gauge.name] = gauge.value
    keys = sorted(set(cells) | set(owners), key=_sort_key)
    rows = tuple(
        Row(key, tuple(cells[key].get(name) for name, _ in columns), tuple(owners.get(key, ())))
        for key in keys
    )
    owned: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        for replica in owners.get(key, ()):
            owned[replica].append(key)
    return LabelTable(label, columns, rows, {r: tuple(p) for r, p in sorted(owned.items())})


def arrange(gauges: list[Gauge]) -> tuple[list[LabelTable], list[Gauge]]:
    """The label tables (partition first) and the gauges no table shows."""
    by_label: dict[str, list[Gauge]] = defaultdict(list)
    rest: list[Gauge] = []
    for gauge in gauges:
        if len(gauge.labels) == 1 and gauge.name != OWNED:
            by_label[gauge.labels[0][0]].append(gauge)
        elif gauge.name != OWNED:
            rest.append(gauge)
    owners = _owners(gauges)
    if owners:
        by_label.setdefault(PARTITION, [])
    labels = sorted(by_label, key=lambda label: (label != PARTITION, label))
    tables = [
        _table(label, by_label[label], owners if label == PARTITION else {}) for label in labels
    ]
    return tables, rest


def headline(sources: list[list[Gauge]]) -> list[Headline]:
    """The headline figures, each summed over its labels in the first source exporting it."""
    found: list[Headline] = []
    for name, label in HEADLINE:
        for gauges in sources:
            samples = [g.value for g in gauges if g.name == name]
            if samples:
                found.append(Headline(label, sum(samples), _of(name, gauges)))
                break
    for gauges in sources:
        owners = _owners(gauges)
        if owners:
            partitions = {dict(g.labels)[PARTITION] for g in gauges if PARTITION in dict(g.labels)}
            owned = sum(1 for partition in partitions if owners.get(partition))
            found.append(
                Headline("Partitions owned by a scheduler replica", owned, len(partitions))
            )
            break
    return found


def _of(name: str, gauges: list[Gauge]) -> float | None:
    if name == "campaigns_lock_masters_reachable":
        return sum(1 for g in gauges if g.name == LOCK_MASTER_UP) or None
    return None
