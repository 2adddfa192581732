"""The engine's partition :class:`Maintainer`, bound to a Django database alias and the settings."""

from __future__ import annotations

import datetime as dt

from django.db import DEFAULT_DB_ALIAS, connections

from partitioned_audit.layouts import Layout
from partitioned_audit.partitioning.maintenance import Created, LockPolicy, Maintainer
from partitioned_audit.partitioning.plan import today_utc
from partitioned_audit.partitioning.ranges import get_generator

from . import conf


def maintainer(
    using: str = DEFAULT_DB_ALIAS, policy: LockPolicy | None = None, layout: Layout | None = None
) -> Maintainer:
    """A :class:`Maintainer` on the DB-API connection behind ``connections[using]``, for the
    table of ``layout`` (default: the active one; another is a table kept after a switch).

    Outside ``atomic`` the connection is in autocommit mode and each change commits at once;
    inside, the changes join the surrounding transaction.
    """
    wrapper = connections[using]
    wrapper.ensure_connection()
    return Maintainer(wrapper.connection, layout or conf.layout(), conf.audit_schema(), policy)


def ensure_current_and_next(
    using: str = DEFAULT_DB_ALIAS, now: dt.datetime | None = None, policy: LockPolicy | None = None
) -> Created:
    """Create the partition holding today and the one after it, unless they exist."""
    generator = get_generator(conf.time_range_generator_name())
    today = today_utc(now)
    current = generator.generate_partition_info_for_current_period(today)
    manager = maintainer(using, policy)
    # Covering the first day after the current period means creating the next partition too.
    plan = manager.plan(generator, (current.to_date - today).days, now)
    if not plan.partitions_to_create:
        return Created([], 0)
    return manager.create(plan.partitions_to_create)
