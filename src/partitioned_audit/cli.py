"""``partitioned-audit``: the partition actions on any PostgreSQL database, without Django.

Example::

    partitioned-audit --dsn postgresql://app@db/app --layout simple create check --extra-days 30

Exit status: 0 on success, 1 when ``check`` finds coverage short or ``verify`` finds the
sealed trail altered, 2 on any other error;
the reason is one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import actions
from .errors import AuditError, one_line
from .layouts import LAYOUTS, get_layout
from .objects import check_schema_name
from .partitioning.maintenance import Maintainer


def connect(dsn: str) -> Any:
    """An autocommit connection with psycopg 3 when installed, else psycopg2."""
    try:
        import psycopg
    except ImportError:
        import psycopg2

        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        return conn
    return psycopg.connect(dsn, autocommit=True)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="partitioned-audit",
        description="Plan, create, check and retire audit table partitions; seal and verify the trail.",
    )
    result.add_argument(
        "--dsn",
        default=os.environ.get("DATABASE_URL"),
        help="libpq connection string or URL (default: $DATABASE_URL)",
    )
    result.add_argument("--layout", choices=sorted(LAYOUTS), default="simple", help="default: simple")
    result.add_argument("--schema", default="public", help="schema of the audit table (default: public)")
    actions.add_arguments(result)
    result.set_defaults(archive_url=os.environ.get("DPA_ARCHIVE_URL"))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.dsn:
        print("partitioned-audit: give --dsn or set DATABASE_URL", file=sys.stderr)
        return 2
    try:
        check_schema_name(args.schema)
        policy = actions.lock_policy(vars(args))
        connection = connect(args.dsn)
    except AuditError as exc:
        print(f"partitioned-audit: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the driver's connection error, whichever driver it is
        print(f"partitioned-audit: cannot connect: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        maintainer = Maintainer(connection, get_layout(args.layout), args.schema, policy)
        actions.run(maintainer, vars(args), sys.stdout, sys.stderr)
    except actions.ActionFailed as exc:
        print(f"partitioned-audit: {exc.action} failed: {exc}", file=sys.stderr)
        return 1
    except AuditError as exc:
        print(f"partitioned-audit: {exc}", file=sys.stderr)
        return 2
    finally:
        connection.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
