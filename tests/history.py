"""What a registry's history.jsonl says, for tests that check it against the folders."""

from __future__ import annotations

from typing import Any


def present_by_history(history: list[dict[str, Any]]) -> set[int]:
    """The versions the history says are present: published and not retired since."""
    present: set[int] = set()
    for event in history:
        if event["event"] in ("promote", "rollback"):
            present.add(event["version"])
        elif event["event"] == "retire":
            present.discard(event["version"])
    return present
