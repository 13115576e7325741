"""`RewardLogs`: records what a TRL reward function logs through its `log_metric` / `log_extra` arguments."""

from __future__ import annotations

from collections import defaultdict


class RewardLogs:
    """Pass `logs.metric` as `log_metric` and `logs.column` as `log_extra`; read `metrics` and `extra`."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = defaultdict(list)
        self.extra: dict[str, list] = {}

    def metric(self, name: str, value: float) -> None:
        self.metrics[name].append(value)

    def column(self, name: str, values: list) -> None:
        self.extra[name] = values
