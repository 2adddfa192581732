"""Generated columns: stored ones are recorded as any column; virtual ones (PostgreSQL 18),
which a trigger reads as NULL whatever their value, are left out of the trail.
"""

from __future__ import annotations

from typing import Any

import django
import pytest

from partitioned_audit import ADVANCED, SIMPLE, TableSpec, enable, install, objects

LAYOUTS = pytest.mark.parametrize("layout", [SIMPLE, ADVANCED], ids=lambda layout: layout.name)


def trail(cur: Any, layout: Any) -> list[tuple[Any, ...]]:
    """(operation, key, payload) of every entry; for the advanced layout the payload is
    (row_data, changed_fields)."""
    if layout is SIMPLE:
        cur.execute(
            "SELECT audit_operation, object_pk, object_payload FROM audit_simple ORDER BY audit_event_id"
        )
    else:
        cur.execute(
            "SELECT action, object_pk, row_data, changed_fields, client_query IS NOT NULL"
            " FROM logged_actions ORDER BY event_id"
        )
    return [tuple(row) for row in cur.fetchall()]


def write_three(cur: Any, table: str = "item") -> None:
    cur.execute(f"INSERT INTO {table} (id, price, qty) VALUES (1, 10, 2), (2, 5, NULL)")
    cur.execute(f"UPDATE {table} SET qty = 3 WHERE id = 1")
    cur.execute(f"UPDATE {table} SET id = 7 WHERE id = 2")  # the key changes: the key trigger fires
    cur.execute(f"DELETE FROM {table} WHERE id = 1")


def expected_trail(layout: Any, rows: dict[str, list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """The trail of write_three() given the recorded form of each row version."""
    ins1, ins2, upd1, key_new, del1 = (rows[k] for k in ("ins1", "ins2", "upd1", "key_new", "del1"))
    if layout is SIMPLE:
        return [
            ("I", "1", ins1),
            ("I", "2", ins2),
            ("U", "1", upd1),
            ("U", "2", key_new),  # the key trigger's (a row trigger: first), under the old key
            ("U", "7", key_new),  # the statement's, under the new key
            ("D", "1", upd1),
        ]
    changed_qty = {k: v for k, v in upd1.items() if k not in ins1 or ins1[k] != v}
    changed_key = {k: v for k, v in key_new.items() if k not in ins2 or ins2[k] != v}
    return [
        # The query text is kept on a statement's first entry; the key trigger keeps none.
        ("I", "1", ins1, None, True),
        ("I", "2", ins2, None, False),
        ("U", "1", ins1, changed_qty, True),
        ("U", "2", ins2, changed_key, False),
        ("U", "7", ins2, changed_key, True),
        ("D", "1", del1, None, True),
    ]


@pytest.mark.pg(">=18")
@LAYOUTS
def test_virtual_generated_columns_are_left_out_of_the_trail(conn, layout):
    cur = conn.cursor()
    install(cur, layout)
    cur.execute(
        "CREATE TABLE item (id int PRIMARY KEY, price int, qty int,"
        " total int GENERATED ALWAYS AS (price * qty) VIRTUAL,"
        " label text GENERATED ALWAYS AS ('item ' || id) VIRTUAL)"
    )
    enable(cur, layout, TableSpec("public", "item", ("id",)))
    write_three(cur)
    rows = {
        "ins1": {"id": 1, "price": 10, "qty": 2},
        "ins2": {"id": 2, "price": 5, "qty": None},
        "upd1": {"id": 1, "price": 10, "qty": 3},
        "key_new": {"id": 7, "price": 5, "qty": None},
        "del1": {"id": 1, "price": 10, "qty": 3},
    }
    assert trail(cur, layout) == expected_trail(layout, rows)


@pytest.mark.pg(">=12")
@LAYOUTS
def test_stored_generated_columns_are_recorded_with_their_value(conn, layout):
    cur = conn.cursor()
    install(cur, layout)
    cur.execute(
        "CREATE TABLE item (id int PRIMARY KEY, price int, qty int,"
        " total int GENERATED ALWAYS AS (price * qty) STORED)"
    )
    enable(cur, layout, TableSpec("public", "item", ("id",)))
    write_three(cur)
    rows = {
        "ins1": {"id": 1, "price": 10, "qty": 2, "total": 20},
        "ins2": {"id": 2, "price": 5, "qty": None, "total": None},
        "upd1": {"id": 1, "price": 10, "qty": 3, "total": 30},
        "key_new": {"id": 7, "price": 5, "qty": None, "total": None},
        "del1": {"id": 1, "price": 10, "qty": 3, "total": 30},
    }
    assert trail(cur, layout) == expected_trail(layout, rows)


@pytest.mark.pg(">=18")
@LAYOUTS
def test_virtual_columns_with_excluded_and_masked_ones(conn, layout):
    """The virtual column goes with the excluded ones; masking and the query rule are
    those of the excluded and masked columns alone."""
    cur = conn.cursor()
    install(cur, layout)
    cur.execute(
        "CREATE TABLE item (id int PRIMARY KEY, price int, qty int, secret text,"
        " total int GENERATED ALWAYS AS (price * qty) VIRTUAL)"
    )
    enable(cur, layout, TableSpec("public", "item", ("id",), excluded=("price",), masked=("secret",)))
    cur.execute("INSERT INTO item (id, price, qty, secret) VALUES (1, 10, 2, 's')")
    cur.execute("UPDATE item SET qty = 3, secret = 't'")
    found = trail(cur, layout)
    if layout is SIMPLE:
        assert found == [
            ("I", "1", {"id": 1, "qty": 2, "secret": "[masked]"}),
            ("U", "1", {"id": 1, "qty": 3, "secret": "[masked]"}),
        ]
    else:
        assert found == [
            ("I", "1", {"id": 1, "qty": 2, "secret": "[masked]"}, None, False),
            ("U", "1", {"id": 1, "qty": 2, "secret": "[masked]"}, {"qty": 3, "secret": "[masked]"}, False),
        ]


@pytest.mark.pg(">=18")
@LAYOUTS
def test_a_partitioned_table_with_a_virtual_column(conn, layout):
    """Writes through the parent and straight to a partition leave the virtual column out."""
    cur = conn.cursor()
    install(cur, layout)
    cur.execute(
        "CREATE TABLE item (id int PRIMARY KEY, price int, qty int,"
        " total int GENERATED ALWAYS AS (price * qty) VIRTUAL) PARTITION BY RANGE (id)"
    )
    cur.execute("CREATE TABLE item_low PARTITION OF item FOR VALUES FROM (0) TO (100)")
    enable(cur, layout, TableSpec("public", "item", ("id",)))
    cur.execute("INSERT INTO item (id, price, qty) VALUES (1, 10, 2)")
    cur.execute("INSERT INTO item_low (id, price, qty) VALUES (2, 5, 1)")
    cur.execute("UPDATE item_low SET qty = 4 WHERE id = 2")
    cur.execute("TRUNCATE item")
    found = trail(cur, layout)
    if layout is SIMPLE:
        assert found == [
            ("I", "1", {"id": 1, "price": 10, "qty": 2}),
            ("I", "2", {"id": 2, "price": 5, "qty": 1}),
            ("U", "2", {"id": 2, "price": 5, "qty": 4}),
            ("T", None, None),
        ]
    else:
        assert found == [
            ("I", "1", {"id": 1, "price": 10, "qty": 2}, None, True),
            ("I", "2", {"id": 2, "price": 5, "qty": 1}, None, True),
            ("U", "2", {"id": 2, "price": 5, "qty": 1}, {"qty": 4}, True),
            ("T", None, None, None, True),
        ]


@pytest.mark.pg(">=18")
@LAYOUTS
def test_a_virtual_column_added_after_the_triggers_is_reported_and_left_out_once_repaired(conn, layout):
    cur = conn.cursor()
    install(cur, layout)
    cur.execute("CREATE TABLE item (id int PRIMARY KEY, price int, qty int)")
    spec = TableSpec("public", "item", ("id",))
    enable(cur, layout, spec)
    assert objects.trigger_problems(cur, layout, "public", [spec]) == []
    cur.execute("ALTER TABLE item ADD COLUMN total int GENERATED ALWAYS AS (price * qty) VIRTUAL")
    # One digest covers all the triggers of a table: each is reported.
    names = ["dpa_audit_ins", "dpa_audit_upd", "dpa_audit_del", "dpa_audit_tru", "dpa_audit_key"]
    outdated = [(spec, f"capture trigger {name} is outdated or belongs to another layout") for name in names]
    assert objects.trigger_problems(cur, layout, "public", [spec]) == outdated
    assert enable(cur, layout, spec) is True  # what migrate does for every registered model
    assert objects.trigger_problems(cur, layout, "public", [spec]) == []
    cur.execute("INSERT INTO item (id, price, qty) VALUES (1, 10, 2)")
    cur.execute("UPDATE item SET qty = 3")
    # Dropping the last virtual column makes the triggers outdated again; once repaired, the
    # table is captured as any other.
    cur.execute("ALTER TABLE item DROP COLUMN total")
    assert objects.trigger_problems(cur, layout, "public", [spec]) == outdated
    assert enable(cur, layout, spec) is True
    cur.execute("UPDATE item SET qty = 4")
    found = trail(cur, layout)
    if layout is SIMPLE:
        assert found == [
            ("I", "1", {"id": 1, "price": 10, "qty": 2}),
            ("U", "1", {"id": 1, "price": 10, "qty": 3}),
            ("U", "1", {"id": 1, "price": 10, "qty": 4}),
        ]
    else:
        assert found == [
            ("I", "1", {"id": 1, "price": 10, "qty": 2}, None, True),
            ("U", "1", {"id": 1, "price": 10, "qty": 2}, {"qty": 3}, True),
            ("U", "1", {"id": 1, "price": 10, "qty": 3}, {"qty": 4}, True),
        ]


# ---------------------------------------------------------------------------------------
# Through Django: a model with GeneratedField(db_persist=False) (Django 5.0+) over a table
# created here, since Django 5.2 does not create virtual columns on PostgreSQL itself.
# ---------------------------------------------------------------------------------------


@pytest.mark.pg(">=18")
@pytest.mark.skipif(django.VERSION < (5, 0), reason="GeneratedField needs Django 5.0")
def test_the_read_api_never_sets_a_virtual_field_from_the_trail(layout, read_model):
    from tests.helpers import generated_item_model, sql
    from tests.helpers import trail as django_trail

    GenItem = generated_item_model(layout)
    item = GenItem.objects.create(price=10, qty=2)
    item.refresh_from_db()
    assert (item.total, item.total_stored) == (20, 20)  # PostgreSQL computes both on read
    item.qty = 3
    item.save()
    GenItem.objects.filter(pk=item.pk).update(qty=4)

    first = {"id": item.pk, "price": 10, "qty": 2, "total_stored": 20}
    second = {"id": item.pk, "price": 10, "qty": 3, "total_stored": 30}
    assert django_trail(read_model, GenItem) == [("I", str(item.pk), first), ("U", str(item.pk), second)] + [
        ("U", str(item.pk), {**second, "qty": 4, "total_stored": 40})
    ]
    page = read_model.objects.history(item)
    assert [v.changes for v in page.versions] == [
        {"id": (None, item.pk), "price": (None, 10), "qty": (None, 2), "total_stored": (None, 20)},
        {"qty": (2, 3), "total_stored": (20, 30)},
        {"qty": (3, 4), "total_stored": (30, 40)},
    ]
    snapshot = page.versions[1].entry.get_instance(GenItem)
    # The test runs in one transaction: every entry has its start time, so as_of() now
    # reads the last version.
    latest = read_model.objects.as_of(GenItem, item.pk, sql("SELECT clock_timestamp()")[0][0])
    for instance, (qty, stored) in ((snapshot, (3, 30)), (latest, (4, 40))):
        assert (instance.pk, instance.price, instance.qty, instance.total_stored) == (
            item.pk,
            10,
            qty,
            stored,
        )
        # Left unloaded, as Django leaves a field it did not read; never None from the trail.
        assert "total" not in instance.__dict__
        assert instance.get_deferred_fields() == {"total"}
