"""Who made a change: the context a writer sets for the audit rows of its transaction.

A writer sets the setting ``partitioned_audit.context`` to a JSON object with ``SET LOCAL``;
the capture functions read it once per statement and store it in ``audit_context`` of
every row they write, NULL when it is unset or empty. ``SET LOCAL`` ends with the
transaction, so nothing is left on a server connection for its next client (a pooler in
transaction mode hands connections over at transaction ends), and on Citus it is the form
that reaches the workers where the triggers fire. Pure: builds the statement, does no I/O.

From psql or another service::

    BEGIN;
    SET LOCAL partitioned_audit.context = '{"user_id": 42, "via": "psql"}';
    UPDATE shop_order SET status = 'paid' WHERE id = 7;
    COMMIT;
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .layouts import CONTEXT_SETTING
from .sql import SQL, Composable, ident, literal

__all__ = ["CONTEXT_SETTING", "encode", "set_local"]


def encode(values: Mapping[str, Any]) -> str:
    """``values`` as compact JSON with sorted keys.

    Raises:
        TypeError: a key is not a string, or a value is not JSON-serialisable (dict, list,
            str, int, float, bool, None); the message names it.
    """
    for key in values:
        if not isinstance(key, str):
            raise TypeError(f"audit context keys must be strings, got {key!r}")
    try:
        return json.dumps(
            dict(values), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise TypeError(f"audit context values must be JSON-serialisable: {exc}") from None


def set_local(encoded: str | None) -> Composable:
    """``SET LOCAL partitioned_audit.context = '...'`` (empty for none). SET takes no bound
    parameter, so the value is rendered by the driver's literal quoting."""
    return SQL("SET LOCAL {} = {}").format(ident(*CONTEXT_SETTING.split(".")), literal(encoded or ""))
