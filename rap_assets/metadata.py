"""Helpers that turn run results into metadata a person can read in the Dagster UI."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], limit: int = 10
) -> str:
    if not rows:
        return "_nothing new_"

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return text.replace("|", "\\|").replace("\n", " ")[:80]

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n_…and {len(rows) - limit} more_")
    return "\n".join(lines)


def breakdown(counter: Counter[str]) -> str:
    """A reasons breakdown, e.g. for skipped or failed rows."""
    if not counter:
        return "_none_"
    return "\n".join(f"- **{reason}**: {count}" for reason, count in counter.most_common())


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(
                self.seconds.get(name, 0.0) + time.perf_counter() - started, 3
            )

    def as_metadata(self) -> dict[str, dg.FloatMetadataValue]:
        return {
            f"seconds_{name}": dg.MetadataValue.float(value) for name, value in self.seconds.items()
        }


def stage_metadata(
    *,
    written: int,
    unchanged: int,
    failed: Counter[str] | None = None,
    skipped: Counter[str] | None = None,
    preview: str | None = None,
    timer: Timer | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The metadata every stage reports: written / unchanged / failed (with reasons) / timings."""
    failed = failed or Counter()
    metadata: dict[str, Any] = {
        "rows_written": dg.MetadataValue.int(written),
        "rows_unchanged": dg.MetadataValue.int(unchanged),
        "rows_failed": dg.MetadataValue.int(sum(failed.values())),
        "failed_by_reason": dg.MetadataValue.md(breakdown(failed)),
    }
    if skipped is not None:
        metadata["rows_skipped"] = dg.MetadataValue.int(sum(skipped.values()))
        metadata["skipped_by_reason"] = dg.MetadataValue.md(breakdown(skipped))
    if preview is not None:
        metadata["preview"] = dg.MetadataValue.md(preview)
    if timer is not None:
        metadata.update(timer.as_metadata())
    for key, value in extra.items():
        metadata[key] = value
    return metadata
