"""What each task of a run did, kept in the run's folder (`stages/`, one JSON file per task instance).

The task's Airflow glue (`orchestration.wiring.recorded`) writes a record when a task's body succeeds,
fails or skips itself: its result (the XCom), or the error's class and reason, its seconds and whether
Airflow will try it again. `make run`'s console follows a run through these files, so it needs neither
Airflow's metadata tables nor a log line's format. A later try of the same task replaces its record.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from tasks.artifacts import read_json, write_json
from tasks.run_folder import RunFolder

StageState = Literal["success", "failed", "skipped"]


class StageError(TypedDict):
    type: str  # the exception's class name
    reason: str  # its message


class StageRecord(TypedDict):
    dag_id: str
    run_id: str
    logical_date: str | None  # ISO 8601; None for a run without one
    task_id: str
    map_index: int  # -1: not mapped
    try_number: int
    state: StageState
    final: bool  # false: a failed try that Airflow will retry
    seconds: float
    result: Any  # the task's return value (success), None otherwise
    error: StageError | None  # failed: what raised; skipped: why (type "skip")


def stage_name(task_id: str, map_index: int) -> str:
    """How the console and the record's file name a task instance: `train[0]` for a mapped one."""
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def write_stage_record(folder: RunFolder, record: StageRecord) -> None:
    # In the result's own key order, as its XCom keeps it (the console lists baselines in that order).
    write_json(folder.stage_record(stage_name(record["task_id"], record["map_index"])), record, sort_keys=False)


def read_stage_records(folder: RunFolder) -> list[StageRecord]:
    """The run's records, in no particular order (none while the run has not started a task)."""
    if not folder.stages.is_dir():
        return []
    # Only whole files: a record being written lies under a dot-prefixed temporary name.
    return [read_json(path) for path in sorted(folder.stages.glob("[!.]*.json"))]
