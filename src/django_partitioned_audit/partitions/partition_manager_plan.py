"""1.0.4's ``Plan``: what exists and what to create, mutable, with its checks.

The engine plans with :func:`partitioned_audit.partitioning.plan.plan`, which returns a
frozen plan; this class is the shape 1.0.4 code builds and inspects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from partitioned_audit.partitioning.plan import Status

from ..compat import deprecated
from .partition_info import PartitionInfo


@dataclass
class Plan:
    existing_partitions: list[PartitionInfo] = field(default_factory=list)
    partitions_to_create: list[PartitionInfo] = field(default_factory=list)
    status: Status | None = None

    def __post_init__(self) -> None:
        deprecated(
            "partition_manager_plan.Plan", "partitioned_audit.partitioning.plan.plan(), which returns a Plan"
        )

    @property
    def sorted_existing(self) -> list[PartitionInfo]:
        return sorted(self.existing_partitions, key=lambda p: p.from_date)

    @property
    def sorted_to_create(self) -> list[PartitionInfo]:
        return sorted(self.partitions_to_create, key=lambda p: p.from_date)

    @property
    def sorted_all(self) -> list[PartitionInfo]:
        return sorted([*self.partitions_to_create, *self.existing_partitions], key=lambda p: p.from_date)

    @property
    def last_partition(self) -> PartitionInfo | None:
        ordered = self.sorted_all
        return ordered[-1] if ordered else None

    def covers_date(self, day_to_cover: dt.date) -> bool:
        return self.get_partition_for_date(self.sorted_all, day_to_cover) is not None

    @classmethod
    def get_partition_for_date(
        cls, partitions: Iterable[PartitionInfo], reference_day: dt.date
    ) -> PartitionInfo | None:
        return next((p for p in partitions if p.from_date <= reference_day < p.to_date), None)

    @classmethod
    def _validate(cls, partitions: Iterable[PartitionInfo]) -> None:
        """Raise when the partitions, in order, leave a gap or overlap."""
        previous: PartitionInfo | None = None
        for info in partitions:
            if previous is not None and previous.to_date != info.from_date:
                raise Exception(f"Invalid: last_to_date={previous.to_date} pi={info}")  # noqa: TRY002 - 1.0.4's
            previous = info

    def validate_existing_partitions(self) -> None:
        self._validate(self.sorted_existing)

    def validate_to_create(self) -> None:
        self._validate(self.sorted_to_create)

    def validate_all(self) -> None:
        self._validate(self.sorted_all)

    def calculate_status(self, today: dt.date, extra_days: int) -> None:
        """Set ``status``: MISSING_CURRENT when today's partition is among those to create,
        MISSING_NEXT when only later ones are, OK when nothing is to create."""
        if self.status is not None:
            raise ValueError(f"the status is already set: {self.status}")
        if extra_days < 0:
            raise ValueError(f"extra_days must be zero or more, got {extra_days}")
        if not (self.existing_partitions or self.partitions_to_create):
            raise ValueError("a plan without any partition has no status")
        if self.sorted_all[-1].to_date < today + dt.timedelta(days=extra_days):
            raise ValueError(f"the plan does not cover {extra_days} days after {today}")
        if self.get_partition_for_date(self.sorted_to_create, today) is not None:
            self.status = Status.MISSING_CURRENT
        elif self.get_partition_for_date(self.sorted_existing, today) is None:
            raise ValueError(f"no partition of the plan holds {today}")
        else:
            self.status = Status.MISSING_NEXT if self.partitions_to_create else Status.OK


__all__ = ["Plan", "Status"]
