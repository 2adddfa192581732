"""What a reader copies from the README and docs/ works as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_blocks(path: Path) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), flags=re.S)


def test_the_readme_does_not_tell_to_install_1_0_4_from_the_index():
    commands = [
        line.strip()
        for block in code_blocks(ROOT / "README.md")
        for line in block.splitlines()
        if line.strip().startswith("pip install")
    ]
    assert commands, "the README shows how to install"
    assert not [c for c in commands if re.match(r"pip install django-partitioned-audit(\s|$|\[)", c)]


def test_the_readme_installation_shows_who_and_how_to_read():
    install = (ROOT / "README.md").read_text().split("## Installation", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "django_partitioned_audit.middleware.AuditContextMiddleware",
        "with audit_context(",
        ".history(order)",
        ".as_of(Order, 42, when)",
    ):
        assert needed in install


def test_no_command_in_the_docs_abbreviates_a_value():
    """A digest shortened to ``5806abac...a622`` in a command cannot be pasted."""
    # Hex digits around an ellipsis, with a letter on each side (event ranges are 1..2000).
    shortened = re.compile(r"[0-9a-f]*[a-f][0-9a-f]*\.{2,3}[0-9a-f]*[a-f][0-9a-f]*")
    found = [
        f"{path.name}: {line.strip()}"
        for path in DOCS
        for block in code_blocks(path)
        for line in block.splitlines()
        if shortened.search(line)
    ]
    assert found == []


def test_the_wheel_the_readme_names_is_the_one_pip_builds(tmp_path):
    named = re.search(r"dist/(django_partitioned_audit-\S+\.whl)", (ROOT / "README.md").read_text())
    assert named is not None
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name for p in tmp_path.glob("*.whl")] == [named[1]]
