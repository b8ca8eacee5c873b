"""`make run`'s console lines (`orchestration.run_console`), on the summaries and records of real runs of
the retrain DAG (800 movies, GloVe module, 5 epochs): a first run that promotes, a forced run that promotes
over a champion, an unchanged week that retrains nothing, and a run the model gate refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration.run_console import (
    RunRecords,
    Stage,
    data_gate_words,
    drift_words,
    failure_line,
    grouped_line,
    main,
    parse_task_states,
    recorded_stage,
    stage_line,
    summary_lines,
)
from tasks.run_folder import RunFolder
from tasks.stage_records import StageError, StageRecord, write_stage_record

RUN = "/tmp/run/artifacts/runs/manual__2026-12-02T12~3A55~3A04.065659~2B00~3A00"
GENRES = ["Comedy", "Thriller", "Romance", "Action", "Horror", "Crime", "Documentary", "Adventure", "Science Fiction"]
LOG = Path("/tmp/run/airflow/make-run.log")

EMBEDDING = {
    "path": "/tmp/run/modules/glove-6b-50d-1.0.0-r1",
    "fingerprint": "f02ce3d35b183fa639931f276f2d2dcb5df944c509fb5eaacdfdf8946fb73c9a",
    "seconds": 0.02,
}
DOWNLOAD = {
    "url": "/tmp/run/data/movies_head800.csv",
    "path": f"{RUN}/raw/movies_metadata.csv",
    "size_bytes": 666650,
    "sha256": "029b36d30fec44b8d110732c8938281f7374eaa5e35eee1bb7e499123d54266c",
    "gzip": False,
    "csv_bytes": 666650,
    "rows": 800,
    "seconds": 0.06,
}
PREPARE = {
    "records": 800,
    "kept": 658,
    "dropped": {"no_overview": 8, "no_target_genre": 134},
    "train_rows": 457,
    "validation_rows": 73,
    "test_rows": 128,
    "test_fraction": 0.2,
    "validation_fraction": 0.1,
    "genres": GENRES,
    "split_fingerprint": "60651a3e2feb03f0c050999b57323062a5dd81feac6aa49a1797ec976da97afc",
    "path": f"{RUN}/prepared",
    "seconds": 1.71,
}
COMPONENTS = {"data": "5394eb", "embedding_module": "f02ce3", "params": "09bd4d", "code": "fca9fa"}
FINGERPRINT_NEW = {
    "fingerprint": "903b4aece3d9c83a83af966e524058fac0962e7976966d37fa044fc5a9a5731e",
    "components": COMPONENTS,
    "unchanged_since": None,
    "retrain": True,
    "reason": "the data, embedding module, params or code changed since the served version (or none is served)",
    "seconds": 0.02,
}
GATE_AGAIN = (
    "this run's model gate (auc_threshold 0.99) differs from the one version 1 passed (auc_threshold 0.5): "
    'trigger with {"force": true} to retrain and gate again'
)
FINGERPRINT_UNCHANGED = {
    **FINGERPRINT_NEW,
    "unchanged_since": 1,
    "retrain": False,
    "reason": f"unchanged since version 1: nothing to retrain; {GATE_AGAIN}",
    "gate_again": GATE_AGAIN,
}
EMBED = {
    "texts": 658,
    "from_cache": 0,
    "computed": 658,
    "module_fingerprint": EMBEDDING["fingerprint"],
    "seconds": 9.46,
}
SUITES = {
    "genre_coverage": {"success": True, "evaluated": 2},
    "movies": {"success": True, "evaluated": 6},
    "records": {"success": True, "evaluated": 4},
}
VALIDATE = {
    "success": True,
    "suites": SUITES,
    "failed_expectations": [],
    "drift": {"checked": False, "reason": "no served version"},
    "results_path": f"{RUN}/validation/results.json",
    "profile_path": f"{RUN}/validation/data_profile.json",
    "data_docs_path": f"{RUN}/validation/data_docs/index.html",
    "seconds": 3.34,
}
TRAIN = {
    "model_path": f"{RUN}/candidates/0/model",
    "train_rows": 457,
    "validation_rows": 73,
    "validation_auc_micro": 0.7154963612556458,
    "best_epoch": 5,
    "epochs_run": 5,
    "warm_start_from": None,
    "warm_starts": 0,
    "embeddings": {"texts": 530, "from_cache": 530, "computed": 0},
    "genres": GENRES,
    "seconds": 6.08,
    "candidate": {"index": 0, "wide": True},
}
SELECT = {
    **TRAIN,
    "candidates": [{"candidate": {"index": 0, "wide": True}, "validation_auc_micro": 0.7154963612556458}],
}
EVALUATE = {
    "auc_micro": 0.7844923799261083,
    "auc_macro": 0.7389059412852379,
    "test_rows": 128,
    "baselines_auc_micro": {
        "tfidf_logreg": 0.8241658328201971,
        "embedding_logreg": 0.8194802570812809,
        "baseline_average": 0.8312952201354679,
    },
    "path": f"{RUN}/metrics.json",
    "seconds": 1.36,
}
GATE = {
    "metric": "auc_micro",
    "challenger": 0.7844923799261083,
    "threshold": 0.5,
    "max_auc_drop": 0.005,
    "champion": None,
    "passed": True,
    "reason": "auc_micro 0.7845 >= 0.5000; no model in production: judged on the threshold alone",
    "seconds": 0.01,
}
GATE_OVER_CHAMPION = {
    **GATE,
    "challenger": 0.8076604833743842,
    "champion": {"version": 1, "value": 0.7844923799261083},
    "reason": "auc_micro 0.8077 >= 0.5000; champion version 1 auc_micro 0.7845",
}
SERVING_CHECK = {
    "model_dir": f"{RUN}/candidates/0/model",
    "passed": True,
    "shapes": {"empty": [1, 9], "very_long": [1, 9], "non_ascii": [1, 9], "batch_of_64": [64, 9]},
    "seconds": 7.07,
}
PROMOTE = {"version": 1, "path": "/tmp/run/models/movie_genre/1", "retired": [], "seconds": 0.04}
REPORT = {"path": f"{RUN}/report.html", "title": "movie_genre_retrain · run … · version 1", "seconds": 1.82}
REPORT_NONE = {"path": None, "note": "no report: the run stopped before the data gate", "seconds": 0.08}
NO_ALERT = {"gate_failed": None, "sent_by": []}

PROMOTED_RUN = {
    "embedding_module": EMBEDDING,
    "download": DOWNLOAD,
    "prepare": PREPARE,
    "fingerprint": FINGERPRINT_NEW,
    "retrain_needed": True,
    "embed": EMBED,
    "validate": VALIDATE,
    "candidates": [{"index": 0, "wide": True}],
    "select_model": SELECT,
    "evaluate": EVALUATE,
    "gate": GATE,
    "serving_check": SERVING_CHECK,
    "promote": PROMOTE,
    "report": REPORT,
    "gate_alert": NO_ALERT,
}


# The model gate's failure, as `airflow dags test` logged it (a status line before it, the alert's after).
def line(task_id: str, summary: object, seconds: float = 1.25, *, map_index: int = -1, earlier=None) -> str:
    return stage_line(Stage(task_id, map_index, "success", seconds, summary), earlier or {})


def test_each_stage_line_has_name_seconds_and_its_key_figure() -> None:
    assert line("prepare", PREPARE, 1.9) == (
        f"{'prepare':<16}    1.9 s  658 of 800 movies kept (train 457, validation 73, test 128)"
    )
    assert "800 records, 0.7 MB" in line("download", DOWNLOAD)
    assert line("validate", VALIDATE).endswith("data gate passed (12 expectations); drift skipped (no served version)")
    assert line("train", TRAIN, map_index=0).startswith("train[0] ")
    assert "validation AUC 0.7155, 5 epochs" in line("train", TRAIN, map_index=0)
    assert line("evaluate", EVALUATE).endswith("test AUC micro 0.7845, macro 0.7389 on 128 movies")
    assert line("gate", GATE).endswith("passed: " + GATE["reason"])
    assert line("promote", PROMOTE).endswith("version 1 published")
    assert line("report", REPORT_NONE).endswith("no report: the run stopped before the data gate")
    assert line("retrain_needed", True, earlier={"fingerprint": FINGERPRINT_NEW}).endswith("retrain")


def test_an_unchanged_week_says_since_which_version_and_how_to_gate_again() -> None:
    # The short-circuit pushes no XCom when it skips the rest: the fingerprint's summary says why.
    assert line("retrain_needed", None, earlier={"fingerprint": FINGERPRINT_UNCHANGED}).endswith(
        f"unchanged since version 1: nothing to retrain; {GATE_AGAIN}"
    )
    assert line("fingerprint", FINGERPRINT_UNCHANGED).endswith("  unchanged since version 1"), "said once, below"
    skipped = [Stage(task, -1, "skipped", None, None) for task in ("embed", "validate", "train", "promote")]
    assert grouped_line("skipped", skipped).split() == ["skipped", "embed,", "validate,", "train,", "promote"]
    summary = summary_lines(
        {
            "download": DOWNLOAD,
            "prepare": PREPARE,
            "fingerprint": FINGERPRINT_UNCHANGED,
            "report": REPORT_NONE,
            "gate_alert": NO_ALERT,
        },
        log_path=LOG,
    )
    assert f"  Decision  nothing retrained: unchanged since version 1; {GATE_AGAIN}" in summary
    assert "  Version   1 stays served" in summary
    assert summary[-1] == f"  Log       {LOG}"


def test_the_summary_of_a_promoted_run() -> None:
    summary = summary_lines({**PROMOTED_RUN, "gate": GATE_OVER_CHAMPION}, log_path=LOG)
    text = "\n".join(summary)
    assert "  Data      658 of 800 movies kept from /tmp/run/data/movies_head800.csv; data gate passed" in text
    assert (
        "  Model     test AUC micro 0.7845 (macro 0.7389); baselines: TF-IDF 0.8242, embedding 0.8195, "
        "average 0.8313; champion: version 1 0.7845"
    ) in summary
    assert f"  Decision  promote: {GATE_OVER_CHAMPION['reason']}" in summary
    assert "  Version   1 promoted to /tmp/run/models/movie_genre/1" in summary
    assert f"  Report    {RUN}/report.html" in summary
    assert "champion: none served" in "\n".join(summary_lines(PROMOTED_RUN, log_path=LOG))
    assert len(summary) <= 10


def test_drift_checked_or_skipped_is_said() -> None:
    assert drift_words({"checked": False, "reason": "no served version"}) == "drift skipped (no served version)"
    checked = {"checked": True, "served_version": 3, "passed": True, "measures": {"genre_share_change": 0.02}}
    assert drift_words(checked) == "drift checked against version 3: within tolerance"
    assert drift_words({**checked, "passed": False}) == "drift checked against version 3: beyond tolerance"
    refused = {**VALIDATE, "success": False, "failed_expectations": ["records: row count ≥ 100000"]}
    assert data_gate_words(refused).startswith("data gate FAILED (1 of 12 expectations)")


GATE_REASON = "model gate failed: auc_micro 0.8077 < auc_threshold 0.9900 (champion version 1 auc_micro 0.7845)"
LOGICAL_DATE = datetime(2026, 12, 2, 12, 55, 4, 65659, tzinfo=UTC)


def test_a_failed_run_ends_with_its_reason() -> None:
    failed = Stage("gate", -1, "failed", 0.02, None)
    reason = failure_line(failed, StageError(type="ModelGateError", reason=GATE_REASON))
    assert reason == f"gate failed: ModelGateError: {GATE_REASON}"
    assert failure_line(Stage("train", 0, "failed", None, None), None) == (
        "train[0] failed: the task ended failed without a record of why; see the log"
    ), "a task killed before it could write its record"
    summary = summary_lines(
        {k: v for k, v in PROMOTED_RUN.items() if k not in ("gate", "promote")}, log_path=LOG, failure=reason
    )
    assert summary[-1] == reason
    assert "  Version   nothing promoted" in summary
    alerted = line("gate_alert", {"gate_failed": "model gate", "sent_by": []})
    assert alerted.endswith("  model gate alert sent by nobody (only logged)"), alerted


def record(
    run_id: str,
    task_id: str,
    *,
    dag_id: str = "movie_genre_retrain",
    date: datetime = LOGICAL_DATE,
    map_index: int = -1,
    state: str = "success",
    result: object = None,
) -> StageRecord:
    return StageRecord(
        dag_id=dag_id, run_id=run_id, logical_date=date.isoformat(), task_id=task_id, map_index=map_index,
        try_number=1, state=state, final=True, seconds=1.0, result=result, error=None,
    )  # fmt: skip


def test_the_console_follows_its_own_run_by_its_records(tmp_path: Path) -> None:
    """Among the run folders, the console's run is the new one with a record of its DAG at its logical date:
    not an earlier run's, another DAG's at the same time, nor a run of its DAG at another time."""
    runs = tmp_path / "runs"
    earlier = RunFolder(runs / "manual__earlier")
    write_stage_record(earlier, record("manual__earlier", "download"))  # there before the console started
    follow = RunRecords.before_start(runs, "movie_genre_retrain", LOGICAL_DATE)
    assert follow.records() == [] and follow.run_id is None
    other_dag = RunFolder(runs / "manual__a")
    write_stage_record(other_dag, record("manual__a", "rollback", dag_id="movie_genre_rollback"))
    other_time = RunFolder(runs / "manual__b")
    write_stage_record(other_time, record("manual__b", "download", date=LOGICAL_DATE + timedelta(seconds=1)))
    assert follow.records() == []
    ours = RunFolder(runs / "manual__c")
    write_stage_record(ours, record("manual__c", "download", result=DOWNLOAD))
    write_stage_record(ours, record("manual__c", "train", map_index=0, result=TRAIN))
    assert follow.run_id == "manual__c"
    assert sorted(path.name for path in ours.stages.iterdir()) == ["download.json", "train[0].json"]
    stages = sorted(map(recorded_stage, follow.records()), key=lambda s: s.name)
    assert [(s.name, s.summary) for s in stages] == [("download", DOWNLOAD), ("train[0]", TRAIN)]


def test_a_run_refused_before_it_starts_says_why_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    """A param out of bounds, or CONF that is not JSON: told before Airflow starts, exit 2."""
    assert main(["--conf", '{"epochs": -1}']) == 2
    assert capsys.readouterr().out.strip() == "run failed: param epochs=-1: -1 is less than the minimum of 1"
    assert main(["--conf", "{epochs"]) == 2
    assert capsys.readouterr().out.startswith("run failed: CONF is not JSON: ")


def test_task_states_are_read_from_the_cli_s_json_line_even_after_a_log_line() -> None:
    """`airflow tasks states-for-dag-run -o json` prints one JSON line; a log line before it (which may
    start with "[") is not it. Map indexes come as strings, empty for an unmapped task."""
    rows = [
        {"task_id": "train", "state": "upstream_failed", "map_index": "", "dag_id": "movie_genre_retrain"},
        {"task_id": "train", "state": "success", "map_index": "1", "dag_id": "movie_genre_retrain"},
        {"task_id": "promote", "state": "running", "map_index": "", "dag_id": "movie_genre_retrain"},
    ]
    stdout = "[2026-12-08T01:29:51Z] {configuration.py:123} WARNING - a deprecated option\n" + json.dumps(rows) + "\n"
    assert [(s.name, s.state) for s in parse_task_states(stdout)] == [
        ("train", "upstream_failed"),
        ("train[1]", "success"),
    ]
    assert parse_task_states("[no json here\n") == []
