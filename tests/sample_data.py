"""The real sample data and the small helpers every kind of test uses on it (plain functions, no fixtures)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_CSV = PROJECT_ROOT.parent / "shared" / "data" / "movies_metadata_head5000.csv"


def write_head(source: Path, target: Path, records: int) -> Path:
    """The header and first `records` records of a CSV (records may span lines)."""
    with source.open(encoding="utf-8", newline="") as src, target.open("w", encoding="utf-8", newline="") as dst:
        writer = csv.writer(dst)
        for index, row in enumerate(csv.reader(src)):
            if index > records:
                break
            writer.writerow(row)
    return target


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def quick_conf(dataset: Path, **overrides: Any) -> dict[str, Any]:
    """Params for a quick run on the 800-row sample that normally promotes: 5 epochs, one candidate."""
    conf = {"dataset_url": str(dataset), "min_rows": 200, "epochs": 5, "auc_threshold": 0.5}
    return {**conf, "candidates": [{"wide": True}], **overrides}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder`, by relative path, with its content's hash: to tell a folder untouched."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
