"""The partition actions shared by ``partitioned-audit`` and ``manage.py manage_partition_tables``.

Both commands declare the same arguments through :func:`add_arguments` and call :func:`run`,
which asks the :class:`~partitioned_audit.partitioning.maintenance.Maintainer` and writes
1.0.4's tables, or one JSON document per action with ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

from . import sealing
from .errors import AuditError, ConfigurationError, DatabaseProblem, one_line
from .partitioning.maintenance import Created, LockPolicy, Maintainer
from .partitioning.plan import Plan, Status
from .partitioning.ranges import GENERATORS, PartitionInfo, get_generator
from .sql import database_error

ACTIONS = (
    "list",
    "list-all",
    "simulate",
    "create",
    "check",
    "detach",
    "drop",
    "privileges",
    "seal",
    "verify",
    "archive",
    "restore",
)
DEFAULT_EXTRA_DAYS = 30
#: ``--archive`` given without a URL: the default archive URL.
DEFAULT_URL = "default"
#: How long (seconds) a transaction may hold audit rows open before ``seal`` and ``check``
#: fail: its rows stay unsealed, and open to change, until it ends.
DEFAULT_MAX_STALL = 3600


class ActionFailed(AuditError):
    """``check`` or ``verify`` found a problem (exit status 1); the message is the reason.

    The commands print it once, as the last line on stderr: ``<action> failed: <reason>``.
    """

    action = "check"


class CheckFailed(ActionFailed):
    """``check`` found coverage short; the message is the one-line reason."""


class VerifyFailed(ActionFailed):
    """``verify`` found sealed rows or seals that differ; the message names the first."""

    action = "verify"


class StallFailed(ActionFailed):
    """A transaction has held audit rows open for longer than ``--max-stall``; the message
    names its backend."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(reason)
        self.action = action


class Writer(Protocol):
    def write(self, text: str) -> Any: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "actions",
        nargs="+",
        type=_action,
        metavar="action",
        help=f"one or more of: {', '.join(ACTIONS)}; restore is followed by the partition's name",
    )
    parser.add_argument(
        "--extra-days",
        type=int,
        default=DEFAULT_EXTRA_DAYS,
        help=f"days after today that must be covered (default {DEFAULT_EXTRA_DAYS})",
    )
    parser.add_argument(
        "--time-range-generator",
        default="MonthlyTimeRangeGenerator",
        help=f"{', '.join(GENERATORS)} or the dotted path of a TimeRangeGenerator subclass",
    )
    parser.add_argument(
        "--older-than",
        type=int,
        metavar="DAYS",
        help="detach/drop/archive: partitions whose whole range ended at least DAYS days ago",
    )
    parser.add_argument(
        "--yes", action="store_true", help="detach/drop, archive --drop: really do it, not only show the plan"
    )
    add_privilege_arguments(parser, required=False)
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=sealing.DEFAULT_CHUNK_SIZE,
        metavar="IDS",
        help="seal: event ids per digest, the unit verify names (default %(default)s)",
    )
    parser.add_argument(
        "--wait",
        type=int,
        default=sealing.DEFAULT_WAIT_MS,
        metavar="MS",
        help="seal: how long to wait for transactions still adding audit rows (default %(default)s)",
    )
    parser.add_argument(
        "--max-stall",
        type=int,
        default=DEFAULT_MAX_STALL,
        metavar="SECONDS",
        help="seal, check: fail (exit 1) when a transaction has held audit rows open for longer"
        " (default %(default)s)",
    )
    parser.add_argument(
        "--expect",
        metavar="HEAD",
        help="verify: a head digest printed by an earlier seal and kept outside the database",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="verify: recompute every digest here from plain SELECTs, trusting no function in the database",
    )
    parser.add_argument(
        "--to",
        metavar="URL",
        help="archive: s3://bucket/prefix or file:///path (default: DPA_ARCHIVE_URL or $DPA_ARCHIVE_URL)",
    )
    parser.add_argument(
        "--from",
        dest="from_url",
        metavar="URL",
        help="restore: the archive to restore PARTITION from (default: as --to)",
    )
    parser.add_argument(
        "--archive",
        nargs="?",
        const=DEFAULT_URL,
        metavar="URL",
        help="verify: also check the partitions archived there against their seals"
        " (alone: the default archive URL)",
    )
    parser.add_argument(
        "--drop", action="store_true", help="archive: detach and drop each partition once its copy is checked"
    )
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        metavar="N",
        help="archive: rows per fetch and per Parquet row group, which bounds memory (default 50000)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document per action")
    parser.add_argument(
        "--lock-timeout",
        type=int,
        default=LockPolicy.lock_timeout_ms,
        metavar="MS",
        help="longest time an audited write may wait behind maintenance DDL (default %(default)s ms)",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=LockPolicy.attempts,
        help="how often DDL is tried when its locks are busy (default %(default)s)",
    )


_PARTITION_NAME = re.compile(r".+_[0-9]{8}_[0-9]{8}")


def _action(text: str) -> str:
    """An action, or the partition name that follows ``restore``."""
    if text in ACTIONS or _PARTITION_NAME.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(repr(a) for a in ACTIONS)})"
    )


def _split_actions(options: dict[str, Any]) -> None:
    """Move the partition name after ``restore`` from ``actions`` to ``partition``."""
    actions, partition = [], None
    for word in options["actions"]:
        if word in ACTIONS:
            actions.append(word)
        elif actions and actions[-1] == "restore" and partition is None:
            partition = word
        else:
            raise ConfigurationError(f"unexpected argument {word!r}: only restore takes a partition name")
    options["actions"], options["partition"] = actions, partition


def add_privilege_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--app-role",
        required=required,
        metavar="ROLE",
        help="privileges: the role the application connects as; it keeps no privilege on the audit objects",
    )
    parser.add_argument(
        "--read",
        action="store_true",
        help="privileges: let ROLE read the trail through the views (SELECT only)",
    )


def lock_policy(options: dict[str, Any]) -> LockPolicy:
    return LockPolicy(lock_timeout_ms=options["lock_timeout"], attempts=options["attempts"])


def render_table(header: list[str], rows: list[list[str]]) -> str:
    """A bordered table with two spaces of padding, as 1.0.4 printed."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    rule = "+" + "+".join("-" * (w + 4) for w in widths) + "+"

    def line(cells: list[str]) -> str:
        return "|" + "|".join(f"  {str(c).ljust(w)}  " for c, w in zip(cells, widths, strict=False)) + "|"

    return "\n".join([rule, line(header), rule, *(line(r) for r in rows), rule])


def _as_json(info: PartitionInfo) -> dict[str, str]:
    return {"name": info.partition, "from_date": str(info.from_date), "to_date": str(info.to_date)}


class _Run:
    def __init__(
        self, maintainer: Maintainer, options: dict[str, Any], stdout: Writer, stderr: Writer
    ) -> None:
        self.m, self.options, self.stdout, self.stderr = maintainer, options, stdout, stderr
        self.json = bool(options.get("json"))

    def emit(self, document: dict[str, Any], text: str, quiet: bool = False) -> None:
        """Write ``document`` with ``--json``, else ``text`` (nothing when ``quiet``)."""
        if self.json:
            self.stdout.write(json.dumps(document) + "\n")
        elif not quiet:
            self.stdout.write(text + "\n")

    def warn(self, problems: list[str]) -> None:
        if not self.json:
            for problem in problems:
                self.stderr.write(f"warning: {problem}\n")

    def list(self, list_all: bool) -> None:
        from .archive import archived_marks

        rows, docs = [], []
        catalog_rows = self.m.catalog_rows()
        marks = archived_marks(self.m)
        for part in catalog_rows:
            info = PartitionInfo.of(part.name, self.m.layout.table)
            mark = marks.get(part.name)
            if info is not None:
                rows.append([info.partition, str(info.from_date), str(info.to_date), mark or ""])
                docs.append({**_as_json(info), "default": False, "archived": mark})
            elif list_all:
                rows.append([part.name, "", "", mark or ""])
                docs.append(
                    {
                        "name": part.name,
                        "from_date": None,
                        "to_date": None,
                        "default": part.is_default,
                        "archived": mark,
                    }
                )
        header = ["table_name", "from_date", "to_date", "archived"]
        if not marks:  # 1.0.4's table, unchanged, until a partition is archived
            header, rows = header[:3], [row[:3] for row in rows]
        self.emit(
            {
                "action": "list-all" if list_all else "list",
                "partitions": sorted(docs, key=lambda d: d["name"]),
            },
            render_table(header, sorted(rows)),
        )

    def plan_table(self, plan: Plan, created: Created | None = None) -> str:
        """1.0.4's table of a plan; after ``create``, the state it left each partition in."""
        mark = "⚠" if plan.status is Status.MISSING_CURRENT else "❌"
        rows = [[p.partition, str(p.from_date), str(p.to_date), "✓ exists"] for p in plan.existing_partitions]
        rows += [
            [p.partition, str(p.from_date), str(p.to_date), self._state(p, mark, created)]
            for p in plan.partitions_to_create
        ]
        return render_table(["table_name", "from_date", "to_date", "status"], sorted(rows))

    @staticmethod
    def _state(info: PartitionInfo, mark: str, created: Created | None) -> str:
        if created is None:
            return f"{mark} to create"
        if info.partition in created.covered:
            return f"✓ covered by {', '.join(created.covered[info.partition])}"
        if any(p.partition == info.partition for p in created.partitions):
            return "✓ created"
        return "✓ exists"  # a concurrent run made it meanwhile

    def simulate_or_create(self, apply: bool) -> None:
        generator = get_generator(self.options["time_range_generator"])
        plan = self.m.plan(generator, self.options["extra_days"])
        document: dict[str, Any] = {
            "action": "create" if apply else "simulate",
            "status": plan.status.name,
            "existing": [_as_json(p) for p in plan.existing_partitions],
            "to_create": [_as_json(p) for p in plan.partitions_to_create],
            "problems": plan.problems,
        }
        problems = plan.problems
        if not apply:
            self.emit(document, self.plan_table(plan))
            self.warn(problems)
            return
        created = self.m.create(plan.partitions_to_create)
        # The context GIN's last pending list of each finished partition, merged once: the
        # daily run this action is keeps the searches of past months from reading it.
        merged = self.m.merge_pending()
        # Report the state the run left behind: what it created, and only the problems
        # that remain once it did (a gap it filled is no longer one).
        problems = self.m.plan(generator, self.options["extra_days"]).problems
        document.update(
            created=[_as_json(p) for p in created.partitions],
            moved_rows=created.moved_rows,
            merged_pending=merged,
            problems=problems,
        )
        text = self.plan_table(plan, created)
        if created.partitions:
            text += (
                f"\nCreated {len(created.partitions)} partition(s); "
                f"moved {created.moved_rows} row(s) out of the default partition."
            )
        else:
            text += "\nAll required partitions exist."
        if merged:
            text += (
                f"\nMerged the GIN pending lists of {len(merged)} finished context partition(s): "
                f"{sum(merged.values())} page(s)."
            )
        self.emit(document, text)
        self.warn(problems)

    def check(self) -> None:
        result = self.m.check(self.options["extra_days"])
        holders = self.m.holders()
        stalled = self.stalled(holders)
        text = f"OK: {result.reason}"
        if holders:
            text += f"\n{len(holders)} transaction(s) hold audit rows not sealed yet: " + "; ".join(
                h.describe() for h in holders
            )
        self.emit(
            {
                "action": "check",
                "ok": result.ok and stalled is None,
                "reason": result.reason,
                "covered_until": str(result.covered_until) if result.covered_until else None,
                "default_rows": result.default_rows,
                "holders": _holders_json(holders),
            },
            text,
            # A failure is printed once, by the command, as the error it exits with.
            quiet=not result.ok or stalled is not None,
        )
        if not result.ok:
            raise CheckFailed(result.reason)
        if stalled is not None:
            raise StallFailed("check", stalled)

    def stalled(self, holders: Sequence[sealing.Holder]) -> str | None:
        """Why the oldest transaction holding audit rows is too old (``--max-stall``), if it is."""
        limit = self.options.get("max_stall", DEFAULT_MAX_STALL)
        late = [h for h in holders if h.since is not None and h.age > limit]
        if not late:
            return None
        return (
            f"{late[0].describe()} has held audit rows open for more than --max-stall {limit} s;"
            " its rows stay unsealed until it ends: end it (pg_terminate_backend) or find why it waits"
        )

    def privileges(self) -> None:
        outcome = self.m.restrict(self.options["app_role"], bool(self.options.get("read")))
        text = "\n".join(outcome.changes) or "Nothing to change."
        reading = "may read the views" if outcome.read else "cannot read the trail"
        text += f"\nRole {outcome.role} has no privilege on the audit objects and {reading}."
        self.emit(outcome.as_json(), text)

    def seal(self) -> None:
        done = self.m.seal(self.options["chunk_size"], self.options["wait"])
        holders = self.m.holders() if done.waiting_for else []
        if done.sealed and done.first_event_id is not None and done.first_event_id <= done.last_event_id:
            text = (
                f"Sealed events {done.first_event_id}..{done.last_event_id}: {done.rows} row(s) in "
                f"{done.chunks} chunk(s), seal {done.seal_id}."
            )
        elif done.sealed:
            text = f"Sealed {done.late_rows} late row(s) in {done.chunks} chunk(s), seal {done.seal_id}."
        else:
            text = f"Nothing new to seal: events up to {done.last_event_id} are sealed."
        if done.sealed and done.late_rows and done.first_event_id is not None:
            if done.first_event_id <= done.last_event_id:
                text += f"\nIncluding {done.late_rows} late row(s) of transactions earlier seals saw open."
        if holders:
            open_ = "; ".join(h.describe() for h in holders)
            if done.pending:
                text += (
                    f"\n{len(holders)} transaction(s) still adding audit rows ({open_}): sealed around;"
                    " their rows are sealed by the first seal after they end."
                )
            else:
                text += (
                    f"\n{len(holders)} transaction(s) hold the audit table without a transaction id"
                    f" ({open_}): events after {done.last_event_id} wait for the next seal."
                )
        text += f"\nhead: {done.head}" if done.head else "\nNo seal yet: the trail is empty."
        stalled = self.stalled(holders)
        self.emit({**done.as_json(), "ok": stalled is None, "holders": _holders_json(holders)}, text)
        if stalled is not None:
            raise StallFailed("seal", stalled)

    def archive(self) -> None:
        from . import archive
        from .store import open_store

        store = open_store(self.options["to"])
        days = self.options["older_than"]
        drop = bool(self.options.get("drop"))
        with _Progress(self.stderr, enabled=not self.json) as bar:
            done = archive.archive(
                self.m,
                store,
                days,
                drop=drop,
                progress=bar.partition_step,
                batch_rows=self.options.get("batch_rows") or archive.BATCH_ROWS,
            )
        rows = [
            [
                a.partition.partition,
                str(a.partition.from_date),
                str(a.partition.to_date),
                ("archived" if a.state == "archived" else "already archived")
                + (", dropped" if a.dropped else ""),
                str(a.rows),
                str(a.bytes),
            ]
            for a in done
        ]
        text = render_table(["table_name", "from_date", "to_date", "status", "rows", "bytes"], rows)
        if not done:
            text += f"\nNo partition ended {days} or more days ago."
        else:
            total = sum(a.rows for a in done)
            seconds = sum(a.seconds for a in done) or 1e-9
            text += f"\n{len(done)} partition(s), {total} row(s) archived to {store.url} ({total / seconds:,.0f} rows/s)."
        self.emit(
            {
                "action": "archive",
                "url": store.url,
                "older_than_days": days,
                "drop": drop,
                "partitions": [
                    {
                        **_as_json(a.partition),
                        "state": a.state,
                        "rows": a.rows,
                        "bytes": a.bytes,
                        "manifest": a.manifest,
                        "dropped": a.dropped,
                        "seconds": round(a.seconds, 3),
                    }
                    for a in done
                ],
            },
            text,
        )

    def restore(self) -> None:
        from . import archive
        from .store import open_store

        store = open_store(self.options["from_url"])
        name = self.options["partition"]
        with _Progress(self.stderr, enabled=not self.json) as bar:
            bar.start(name, None)
            manifest = archive.restore(self.m, store, name, progress=bar.step)
        self.emit(
            {"action": "restore", "partition": name, "url": store.url, "rows": manifest.rows},
            f"Restored {name}: {manifest.rows} row(s) from {store.url_of(name)}, checked against the manifest and the seals.",
        )

    def verify(self) -> None:
        result = self.m.verify(self.options.get("expect"), offline=bool(self.options.get("offline")))
        if self.options.get("archive"):
            from . import archive
            from .store import open_store

            store = open_store(self.options["archive"])
            found, partitions, rows = archive.verify_archive(self.m, store)
            result = dataclasses.replace(result, findings=[*result.findings, *found])
            self.archive_line = (
                f"archive {store.url}: {partitions} partition(s), {rows} row(s) checked against their seals"
            )
        lines = [
            f"{f.kind}: events {f.first_event_id}..{f.last_event_id} of {f.partitions}: {f.detail}"
            for f in result.retired
        ]
        if result.ok:
            if result.seals:
                lines.insert(
                    0,
                    f"OK: {result.seals} seal(s) cover events {result.first_event_id}..{result.last_event_id}, "
                    f"{result.rows} row(s) present; head: {result.head}",
                )
            else:
                lines.insert(0, "OK: nothing is sealed yet; run seal first.")
            if self.options.get("archive"):
                lines.append(self.archive_line)
            if self.options.get("expect"):
                lines.append(
                    f"The chain contains the head kept outside the database, {self.options['expect']}."
                )
        elif len(result.problems) > 1:
            # The first finding is the error the command exits with; the others are listed.
            lines = [f"also: {f.describe()}" for f in result.problems[1:]] + lines
        self.emit(result.as_json(), "\n".join(lines), quiet=not lines)
        if not result.ok:
            more = len(result.problems) - 1
            suffix = f" (and {more} more finding(s) listed above)" if more else ""
            raise VerifyFailed(result.problems[0].describe() + suffix)

    def retire(self, action: str) -> None:
        days = self.options["older_than"]
        candidates = self.m.expired(days)
        applied = bool(self.options.get("yes"))
        done = self.m.detach(candidates, drop=action == "drop") if applied and candidates else []
        verb = "dropped" if action == "drop" else "detached"
        rows = [
            [p.partition, str(p.from_date), str(p.to_date), verb if applied else f"to be {verb}"]
            for p in candidates
        ]
        text = render_table(["table_name", "from_date", "to_date", "status"], rows)
        if not candidates:
            text += f"\nNo partition ended {days} or more days ago."
        elif applied:
            text += f"\n{len(done)} partition(s) {verb}."
        else:
            text += f"\nNothing changed: {len(candidates)} partition(s) would be {verb}; add --yes to do it."
        self.emit(
            {
                "action": action,
                "older_than_days": days,
                "applied": applied,
                "partitions": [_as_json(p) for p in (done if applied else candidates)],
            },
            text,
        )


class _Progress:
    """A progress bar with rows per second on ``stream`` (rich), for people; nothing with --json."""

    def __init__(self, stream: Writer, enabled: bool) -> None:
        self.stream, self.enabled = stream, enabled
        self.bar: Any = None
        self.task: Any = None
        self.current: str | None = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:  # pragma: no cover - rich comes with the archive extra
                return self
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                TimeElapsedColumn(),
                console=Console(file=self.stream, stderr=True),  # type: ignore[arg-type]
            )
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, name: str, total: int | None) -> None:
        if self.bar is not None:
            self.task = self.bar.add_task(name, total=total, rate="0")
            self.current = name

    def step(self, rows: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task, rows)
            task = self.bar.tasks[-1]
            self.bar.update(self.task, rate=f"{(task.completed / (task.elapsed or 1e-9)):,.0f}")

    def partition_step(self, info: PartitionInfo, rows: int, total: int) -> None:
        if self.current != info.partition:
            self.start(info.partition, total)
        self.step(rows)


def _holders_json(holders: Sequence[sealing.Holder]) -> list[dict[str, Any]]:
    return [
        {"pid": h.pid, "xid": h.xid, "since": h.since.isoformat() if h.since else None, "age": h.age}
        for h in holders
    ]


def run(maintainer: Maintainer, options: dict[str, Any], stdout: Writer, stderr: Writer) -> None:
    """Run ``options["actions"]`` in order.

    Raises:
        ActionFailed: ``check`` found coverage short or ``verify`` an altered trail (exit 1).
        AuditError: the action could not tell: bad options, the audit objects not installed,
            a privilege missing, the connection lost (exit 2); the message is one line.
    """
    if options["extra_days"] < 0:
        raise ConfigurationError(f"--extra-days must be zero or more, got {options['extra_days']}")
    get_generator(options["time_range_generator"])  # fail before doing anything
    retiring = [a for a in options["actions"] if a in ("detach", "drop")]
    if retiring and options.get("older_than") is None:
        raise ConfigurationError(f"{retiring[0]} needs --older-than DAYS")
    if retiring and options["older_than"] < 1:
        raise ConfigurationError(f"--older-than must be 1 or more, got {options['older_than']}")
    _split_actions(options)
    # The commands pass the default archive URL (DPA_ARCHIVE_URL) as ``archive_url``.
    default_url = options.get("archive_url")
    for key in ("to", "from_url"):
        options[key] = options.get(key) or default_url
    if options.get("archive") == DEFAULT_URL:
        if not default_url:
            raise ConfigurationError("verify --archive needs a URL (or the DPA_ARCHIVE_URL setting)")
        options["archive"] = default_url
    archiving = [a for a in options["actions"] if a == "archive"]
    if archiving and options.get("older_than") is None:
        raise ConfigurationError("archive needs --older-than DAYS")
    if archiving and options["older_than"] < 1:
        raise ConfigurationError(f"--older-than must be 1 or more, got {options['older_than']}")
    if archiving and options.get("batch_rows") is not None and options["batch_rows"] < 1:
        raise ConfigurationError(f"--batch-rows must be 1 or more, got {options['batch_rows']}")
    if archiving and options.get("drop") and not options.get("yes"):
        raise ConfigurationError(
            "archive --drop drops each partition once its copy is checked: add --yes to do it"
        )
    if archiving and not options.get("to"):
        raise ConfigurationError("archive needs --to URL (or the DPA_ARCHIVE_URL setting)")
    if "restore" in options["actions"] and not (options.get("partition") and options.get("from_url")):
        raise ConfigurationError(
            "restore needs the partition's name and --from URL (or the DPA_ARCHIVE_URL setting)"
        )
    if "privileges" in options["actions"] and not options.get("app_role"):
        raise ConfigurationError("privileges needs --app-role ROLE")
    runner = _Run(maintainer, options, stdout, stderr)
    for action in options["actions"]:
        try:
            _run_one(runner, action)
        except AuditError:
            raise
        except Exception as exc:
            if not database_error(exc):
                raise
            # Not installed, no permission, the connection lost: the action could not tell.
            raise DatabaseProblem(f"{action}: {one_line(exc)}") from exc


def _run_one(runner: _Run, action: str) -> None:
    if action in ("list", "list-all"):
        runner.list(list_all=action == "list-all")
    elif action in ("simulate", "create"):
        runner.simulate_or_create(apply=action == "create")
    elif action in ("detach", "drop"):
        runner.retire(action)
    else:
        {
            "check": runner.check,
            "privileges": runner.privileges,
            "seal": runner.seal,
            "verify": runner.verify,
            "archive": runner.archive,
            "restore": runner.restore,
        }[action]()
