"""First-response times in /metrics: a histogram of the waits answered in the last 24 hours.

It is a snapshot recomputed from stored messages (every process shows the same figures), not a counter
that only grows: read it with histogram_quantile() directly, without rate().
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

NAME = "wabridge_first_response_seconds"
BUCKETS: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)


def bucket_counts(values: Sequence[float], buckets: Sequence[float] = BUCKETS) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs ending with +Inf."""
    out = [(str(float(b)), float(sum(1 for v in values if v <= b))) for b in buckets]
    out.append(("+Inf", float(len(values))))
    return out


class FirstResponseHistogram(Collector):
    def __init__(self) -> None:
        self._values: list[float] = []

    def update(self, responses: Iterable[timedelta]) -> None:
        self._values = [r.total_seconds() for r in responses]

    def collect(self) -> Iterable[HistogramMetricFamily]:
        yield HistogramMetricFamily(NAME, "First-response times of waits answered in the last 24 hours",
                                    buckets=bucket_counts(self._values), sum_value=sum(self._values))
