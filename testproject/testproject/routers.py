"""Database routing of the test project: the ``other`` database holds everything but ``library``."""

from __future__ import annotations

from typing import Any


class LibraryOnlyOnDefault:
    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if db == "other" and app_label == "library":
            return False
        return None
