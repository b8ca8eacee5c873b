"""The documents say what the code does: every run param and environment variable is in
docs/configuration.md, and every relative link in README.md and docs/ points at a file that exists."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from tasks import config
from tasks.config import PARAM_SCHEMAS
from tests.sample_data import PROJECT_ROOT

CONFIGURATION = PROJECT_ROOT / "docs" / "configuration.md"
DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def table_names(text: str, heading_column: str) -> set[str]:
    """The `backticked` names in the first column of the Markdown table whose header starts with
    `| heading_column |`."""
    table = text.split(f"| {heading_column} |", 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines()[2:] if line.startswith("|")]
    return {name for cell in first_cells for name in re.findall(r"`([^`]+)`", cell)}


def test_every_run_param_is_documented_once() -> None:
    assert table_names(CONFIGURATION.read_text(encoding="utf-8"), "param") == set(PARAM_SCHEMAS)


def test_every_environment_variable_settings_reads_is_documented() -> None:
    read = set(re.findall(r'environ\.get\("([A-Z_]+)"', inspect.getsource(config.Settings.from_env)))
    assert read and table_names(CONFIGURATION.read_text(encoding="utf-8"), "variable") == read


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_resolve(document: Path) -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text(encoding="utf-8"))
    local = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    missing = [t for t in local if not (document.parent / t).exists()]
    assert not missing, f"{document.name} links to missing files: {missing}"
