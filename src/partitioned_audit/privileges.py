"""Close the audit objects to an application role: ``audit_privileges --app-role ROLE``.

The recommended set-up has two roles: the owner runs ``migrate`` and owns the audit
objects; the application role connects at run time. :func:`apply` revokes every privilege
the application role and ``PUBLIC`` hold on every audit object (tables, each partition,
the DEFAULT partition, detached partitions, views, sequences, the seal tables, functions,
a dedicated audit schema), grants ``SELECT`` on the read views (and ``EXECUTE`` on the function
returning one object's rows of the read view) when asked to, and then asks the server,
through ``has_*_privilege()``, whether the role can still do anything it should not, for
instance through membership in a third role. On every audited table it takes
:data:`AUDITED_TABLE_CLOSED` (TRIGGER, REFERENCES, MAINTAIN) from the role and PUBLIC, and
leaves reading and writing rows alone. It is idempotent: a second run changes nothing.

:func:`close_audited_table` does the same, for every role but the owner, to each table
``enable()`` starts auditing, so a table created later under default privileges that grant
ALL never hands its capture triggers to the application.

:func:`match_parent` gives a new partition exactly its parent's grants, so that default
privileges (``ALTER DEFAULT PRIVILEGES ... GRANT ... ON TABLES``) never open a partition
that its parent keeps closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import catalog
from .errors import ConfigurationError
from .layouts import DETACHED_COMMENT, LAYOUTS, PARTITION_COMMENT, Layout, functions
from .sql import SQL, Composable, Cursor, execute, ident, render

#: Every privilege PostgreSQL can grant on the kinds of object below; catalog text is only
#: ever turned into SQL through this list.
_KNOWN = {
    "TABLE": ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"),
    "SEQUENCE": ("USAGE", "SELECT", "UPDATE"),
    "FUNCTION": ("EXECUTE",),
    "SCHEMA": ("USAGE", "CREATE"),
}
PUBLIC = "PUBLIC"

#: What no role but its owner may hold on an audited table. TRIGGER lets a role replace a
#: capture trigger (CREATE OR REPLACE TRIGGER needs nothing more) with one that records
#: nothing; REFERENCES lets it hang foreign keys, and their triggers, on the table; MAINTAIN
#: (PostgreSQL 17) lets it LOCK, CLUSTER or REINDEX it. Reading and writing rows stay.
AUDITED_TABLE_CLOSED = ("TRIGGER", "REFERENCES", "MAINTAIN")


class PrivilegeError(ConfigurationError):
    """The role cannot be closed off (it is a superuser, the owner, ...), or still has access."""


@dataclass(frozen=True)
class AuditObject:
    kind: str  # a key of _KNOWN
    name: Composable  # the quoted name, with the argument types of a function
    label: str  # how the object is named in messages
    wanted: frozenset[str] = frozenset()  # what the application role should keep

    @property
    def target(self) -> Composable:
        """What GRANT and REVOKE name, e.g. ``TABLE "public"."audit_simple"``."""
        return SQL(self.kind + " ") + self.name

    def oid(self, cursor: Cursor) -> int:
        """The object's OID, which every catalog function below is given.

        The catalog functions read a name given as text in different ways: ``::regclass``
        and ``has_table_privilege()`` parse a quoted, qualified name, but
        ``has_schema_privilege()`` takes a schema's name as it is, so ``'"audit"'`` named
        a schema with quotes in its name. Resolving the quoted name once, through the
        ``reg*`` type of its kind, leaves no text to be read either way.
        """
        cursor.execute(f"SELECT %s::{_REG[self.kind]}::oid", [render(self.name, cursor)])  # noqa: S608
        return int(cursor.fetchone()[0])


@dataclass
class Outcome:
    role: str
    read: bool
    changes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"action": "privileges", "role": self.role, "read": self.read, "changes": self.changes}


def _role_facts(cursor: Cursor, role: str, owner_of: str) -> tuple[bool, bool, bool]:
    """(exists, is superuser, is or acts as the owner of relation ``owner_of``)."""
    cursor.execute(
        """
        SELECT r.rolsuper,
               pg_has_role(r.oid, c.relowner, 'USAGE') OR pg_has_role(r.oid, c.relowner, 'MEMBER')
          FROM pg_catalog.pg_roles r
          LEFT JOIN pg_catalog.pg_class c ON c.oid = to_regclass(%s)
         WHERE r.rolname = %s
        """,
        [owner_of, role],
    )
    row = cursor.fetchone()
    if row is None:
        return False, False, False
    return True, bool(row[0]), bool(row[1])


def audit_objects(cursor: Cursor, schema: str, read: bool) -> list[AuditObject]:
    """Every object holding or writing audit rows in ``schema``, for every layout installed there."""
    found: list[AuditObject] = []
    relations: dict[str, str] = {}  # name -> kind
    for layout in LAYOUTS.values():
        if not catalog.existing_tables(cursor, [(schema, layout.table)]):
            continue
        relations.update(
            {
                layout.table: "TABLE",
                layout.default_partition: "TABLE",
                layout.sequence: "SEQUENCE",
                layout.seal_table: "TABLE",
                layout.mark_table: "TABLE",
                layout.context_table: "TABLE",
                layout.context_default_partition: "TABLE",
                layout.context_sequence: "SEQUENCE",
            }
        )
        for parent in (layout.table, layout.context_table):
            relations.update({row.name: "TABLE" for row in catalog.partitions(cursor, schema, parent)})
        relations.update(dict.fromkeys(layout.views, "VIEW"))
        for name, args in functions(layout):
            signature = SQL("{}({})").format(ident(schema, name), SQL(args))
            found.append(AuditObject("FUNCTION", signature, f"function {schema}.{name}({args})"))
        # They read the views with the caller's rights: a reader runs them as it reads the views.
        for name, args, _ in layout.read_functions:
            found.append(
                AuditObject(
                    "FUNCTION",
                    SQL("{}({})").format(ident(schema, name), SQL(args)),
                    f"function {schema}.{name}({args})",
                    frozenset({"EXECUTE"}) if read else frozenset(),
                )
            )
    if not relations:
        raise PrivilegeError(f"no audit table in schema {schema!r}; run migrate (or install()) first")
    cursor.execute(
        """
        SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND obj_description(c.oid, 'pg_class') = ANY (%s)
        """,
        [schema, [PARTITION_COMMENT, DETACHED_COMMENT]],
    )
    relations.update({row[0]: "TABLE" for row in cursor.fetchall()})
    for name, kind in sorted(relations.items()):
        wanted = frozenset({"SELECT"}) if read and kind == "VIEW" else frozenset()
        sql_kind = "SEQUENCE" if kind == "SEQUENCE" else "TABLE"
        label = f"{kind.lower()} {schema}.{name}"
        found.append(AuditObject(sql_kind, ident(schema, name), label, wanted))
    if schema != "public":
        # A dedicated audit schema: reading the views needs USAGE; CREATE there would let a
        # role make a table under the name of a partition yet to come.
        wanted = frozenset({"USAGE"}) if read else frozenset()
        found.append(AuditObject("SCHEMA", ident(schema), f"schema {schema}", wanted))
    return found


def _granted(cursor: Cursor, obj: AuditObject, grantee: str) -> set[str]:
    """What ``grantee`` (a role name or PUBLIC) holds on ``obj`` directly, per its ACL."""
    cursor.execute(
        f"SELECT a.privilege_type FROM ({_ACL[obj.kind]}) AS o(acl, dflt)"  # noqa: S608 - fixed texts
        " CROSS JOIN LATERAL aclexplode(coalesce(o.acl, o.dflt)) AS a"
        " WHERE a.grantee = CASE WHEN %s = 'PUBLIC' THEN 0::oid"
        " ELSE (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s) END",
        [obj.oid(cursor), grantee, grantee],
    )
    return {row[0] for row in cursor.fetchall()}


#: The type whose input function parses a quoted name of each kind of object.
_REG = {"TABLE": "regclass", "SEQUENCE": "regclass", "FUNCTION": "regprocedure", "SCHEMA": "regnamespace"}

#: The ACL of one object and the ACL it has when none was set, by kind, given its OID.
_ACL = {
    "TABLE": "SELECT relacl, acldefault('r', relowner) FROM pg_catalog.pg_class WHERE oid = %s::oid",
    "SEQUENCE": "SELECT relacl, acldefault('s', relowner) FROM pg_catalog.pg_class WHERE oid = %s::oid",
    "FUNCTION": "SELECT proacl, acldefault('f', proowner) FROM pg_catalog.pg_proc WHERE oid = %s::oid",
    "SCHEMA": "SELECT nspacl, acldefault('n', nspowner) FROM pg_catalog.pg_namespace WHERE oid = %s::oid",
}


def _grantee(name: str) -> Composable:
    return SQL(PUBLIC) if name == PUBLIC else ident(name)


def _privileges(names: Iterable[str], kind: str) -> Composable:
    return SQL(", ").join(SQL(p) for p in _KNOWN[kind] if p in set(names))


def _set_grants(cursor: Cursor, obj: AuditObject, grantee: str, wanted: frozenset[str]) -> list[str]:
    """Make ``grantee`` hold exactly ``wanted`` on ``obj``; return what changed, in words."""
    have = _granted(cursor, obj, grantee) & set(_KNOWN[obj.kind])
    changes = []
    extra, missing = have - wanted, wanted - have
    if extra:
        execute(
            cursor,
            SQL("REVOKE {} ON {} FROM {}").format(
                _privileges(extra, obj.kind), obj.target, _grantee(grantee)
            ),
        )
        changes.append(f"revoked {', '.join(sorted(extra))} on {obj.label} from {grantee}")
    if missing:
        execute(
            cursor,
            SQL("GRANT {} ON {} TO {}").format(_privileges(missing, obj.kind), obj.target, _grantee(grantee)),
        )
        changes.append(f"granted {', '.join(sorted(missing))} on {obj.label} to {grantee}")
    return changes


_HAS = {
    "TABLE": "has_table_privilege",
    "SEQUENCE": "has_sequence_privilege",
    "FUNCTION": "has_function_privilege",
    "SCHEMA": "has_schema_privilege",
}


def _still_allowed(cursor: Cursor, obj: AuditObject, role: str) -> list[str]:
    """Privileges the server still grants ``role`` on ``obj`` beyond what it should keep."""
    target = obj.oid(cursor)
    cursor.execute("SELECT current_setting('server_version_num')::int >= 170000")
    has_maintain = cursor.fetchone()[0]  # MAINTAIN came with PostgreSQL 17
    left = []
    for privilege in _KNOWN[obj.kind]:
        if privilege in obj.wanted or (privilege == "MAINTAIN" and not has_maintain):
            continue
        cursor.execute(f"SELECT {_HAS[obj.kind]}(%s, %s::oid, %s)", [role, target, privilege])  # noqa: S608
        if cursor.fetchone()[0]:
            left.append(privilege)
    return left


def _owned_audited_tables(cursor: Cursor, role: str) -> list[str]:
    """The audited tables ``role`` owns or acts as the owner of, in one query."""
    audited = sorted({(t.schema, t.table) for t in catalog.audit_triggers(cursor)})
    cursor.execute(
        """
        SELECT w.schema || '.' || w.name
          FROM unnest(%s::text[], %s::text[]) AS w(schema, name)
          JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
          JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
          JOIN pg_catalog.pg_roles r ON r.rolname = %s
         WHERE pg_has_role(r.oid, c.relowner, 'USAGE') OR pg_has_role(r.oid, c.relowner, 'MEMBER')
        """,
        [[s for s, _ in audited], [t for _, t in audited], role],
    )
    return [row[0] for row in cursor.fetchall()]


def _revoke(cursor: Cursor, obj: AuditObject, grantee: str, privileges: Iterable[str]) -> list[str]:
    """Take ``privileges`` from ``grantee`` on ``obj`` where its ACL grants them; say what."""
    have = _granted(cursor, obj, grantee) & set(privileges)
    if not have:
        return []
    execute(
        cursor,
        SQL("REVOKE {} ON {} FROM {}").format(_privileges(have, obj.kind), obj.target, _grantee(grantee)),
    )
    return [f"revoked {', '.join(sorted(have))} on {obj.label} from {grantee}"]


def audited_tables(cursor: Cursor) -> list[AuditObject]:
    """Every table that has capture triggers (each partition of one has its own), as objects
    on which a role may read and write rows but hold none of :data:`AUDITED_TABLE_CLOSED`."""
    tables = sorted({(t.schema, t.table) for t in catalog.audit_triggers(cursor)})
    tables = sorted(
        {*tables, *(p for parts in catalog.partitions_of(cursor, tables).values() for p in parts)}
    )
    keep = frozenset(p for p in _KNOWN["TABLE"] if p not in AUDITED_TABLE_CLOSED)
    return [AuditObject("TABLE", ident(s, t), f"table {s}.{t}", keep) for s, t in tables]


def close_audited_table(cursor: Cursor, schema: str, table: str) -> list[str]:
    """Take :data:`AUDITED_TABLE_CLOSED` from every role but the owner, and from PUBLIC, on
    ``schema.table``: what ``enable()`` does to a table it starts auditing, whatever default
    privileges gave it when it was created. Returns what changed, in words."""
    obj = AuditObject("TABLE", ident(schema, table), f"table {schema}.{table}")
    changes = []
    for grantee in sorted(_grants_on(cursor, obj.name)):
        changes += _revoke(cursor, obj, grantee, AUDITED_TABLE_CLOSED)
    return changes


def apply(cursor: Cursor, layout: Layout, schema: str, role: str, read: bool = False) -> Outcome:
    """Leave ``role`` (and PUBLIC) no privilege on the audit objects but SELECT on the views with
    ``read``, and none of :data:`AUDITED_TABLE_CLOSED` on any audited table.

    Raises:
        PrivilegeError: ``role`` does not exist, is a superuser, owns (or acts as the owner
            of) the audit objects or an audited table, or still holds a privilege after the
            revocations (granted to a role it belongs to: the message names what is left).
    """
    if not isinstance(role, str) or not role or role.upper() == PUBLIC:
        raise PrivilegeError(f"--app-role needs the name of an existing role, got {role!r}")
    exists, superuser, owner = _role_facts(cursor, role, render(ident(schema, layout.table), cursor))
    if not exists:
        raise PrivilegeError(f"role {role!r} does not exist; create it first (CREATE ROLE {role} LOGIN)")
    if superuser:
        raise PrivilegeError(f"role {role!r} is a superuser: no privilege restricts it; use an ordinary role")
    if owner:
        raise PrivilegeError(
            f"role {role!r} owns the audit objects in schema {schema!r} (or acts as their owner through "
            "membership): the application needs a role of its own"
        )
    owned = _owned_audited_tables(cursor, role)
    if owned:
        raise PrivilegeError(
            f"role {role!r} owns the audited table(s) {', '.join(sorted(owned))}, so it could disable "
            "their capture triggers; let the owner role own them (ALTER TABLE ... OWNER TO)"
        )
    outcome = Outcome(role, read)
    objects = audit_objects(cursor, schema, read)
    for obj in objects:
        outcome.changes += _set_grants(cursor, obj, role, obj.wanted)
        outcome.changes += _set_grants(cursor, obj, PUBLIC, frozenset())
    audited = audited_tables(cursor)
    for obj in audited:
        outcome.changes += _revoke(cursor, obj, role, AUDITED_TABLE_CLOSED)
        outcome.changes += _revoke(cursor, obj, PUBLIC, AUDITED_TABLE_CLOSED)
    left = [
        f"{', '.join(p)} on {obj.label}"
        for obj in [*objects, *audited]
        if (p := _still_allowed(cursor, obj, role))
    ]
    if left:
        raise PrivilegeError(
            f"role {role!r} still has {'; '.join(left)} through a role it is a member of "
            "(see \\du and \\dp); revoke those grants from that role"
        )
    return outcome


def _grants_on(cursor: Cursor, relation: Composable) -> dict[str, set[str]]:
    """Privileges by grantee (a role name or PUBLIC) on ``relation``, its owner left out."""
    cursor.execute(
        """
        SELECT coalesce(g.rolname, 'PUBLIC'), a.privilege_type
          FROM pg_catalog.pg_class c
         CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) AS a
          LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
         WHERE c.oid = %s::regclass AND a.grantee <> c.relowner
        """,
        [render(relation, cursor)],
    )
    found: dict[str, set[str]] = {}
    for grantee, privilege in cursor.fetchall():
        found.setdefault(grantee, set()).add(privilege)
    return found


def match_parent(cursor: Cursor, schema: str, partition: str, parent: str) -> None:
    """Give ``partition`` its parent's grants, and no other (default privileges included)."""
    wanted = _grants_on(cursor, ident(schema, parent))
    obj = AuditObject("TABLE", ident(schema, partition), f"table {schema}.{partition}")
    for grantee in sorted({*_grants_on(cursor, obj.name), *wanted, PUBLIC}):
        _set_grants(cursor, obj, grantee, frozenset(wanted.get(grantee, ())))


def view_readers(cursor: Cursor, schema: str, views: Iterable[str]) -> list[str]:
    """The roles (PUBLIC and each view's owner aside) granted SELECT on any of ``views``
    that exists: what an install that recreates the views grants again (see
    :func:`grant_view_readers`), so a role given ``--read`` keeps reading them."""
    cursor.execute(
        """
        SELECT DISTINCT g.rolname::text
          FROM unnest(%s::text[]) AS v(name)
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(v.name)
         CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
          JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantee
         WHERE a.privilege_type OPERATOR(pg_catalog.=) 'SELECT' AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
         ORDER BY 1
        """,
        [[render(ident(schema, name), cursor) for name in views]],
    )
    return [row[0] for row in cursor.fetchall()]


def grant_read_functions(cursor: Cursor, layout: Layout, schema: str, roles: Iterable[str]) -> None:
    """GRANT EXECUTE on the read functions of ``layout`` (which read the views with the
    caller's rights) to each of ``roles``: the readers of the views, see :func:`view_readers`."""
    for role in roles:
        for name, arguments, _ in layout.read_functions:
            execute(
                cursor,
                SQL("GRANT EXECUTE ON FUNCTION {}({}) TO {}").format(
                    ident(schema, name), SQL(arguments), ident(role)
                ),
            )


def grant_view_readers(cursor: Cursor, schema: str, views: Iterable[str], roles: Iterable[str]) -> None:
    """GRANT SELECT on each of ``views`` to each of ``roles`` (see :func:`view_readers`)."""
    for name in views:
        for role in roles:
            execute(cursor, SQL("GRANT SELECT ON {} TO {}").format(ident(schema, name), ident(role)))
