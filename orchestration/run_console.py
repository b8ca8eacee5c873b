"""`make run`'s console: the retrain DAG once through `airflow dags test`, told in a few lines.

python -m orchestration.run_console [--conf JSON] [--log PATH]

Airflow's own output (hundreds of lines of Airflow, Great Expectations and TensorFlow logs) goes to the log
file, whose path is printed first. While the run goes on, the runner follows its task instances in the
metadata DB and prints one line per stage as it finishes: its name, its seconds and its key figure, read from
the stage's summary (its XCom). At the end it prints a short summary: the data, the model against its
baselines and the champion, the decision, the promoted version and where report.html is. A failed run ends
with the failing task's reason (the `<task> failed: <ErrorClass>: <reason>` line its log starts with) as the
last line, and exits 1.

The formatting is in small pure functions of the stage summaries (`tasks.pipeline`), so tests check it on
real summaries without running Airflow.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

from tasks.pipeline import RETRAIN_TASKS
from tasks.results import (
    DownloadResult,
    EmbeddingModuleResult,
    EmbedResult,
    EvaluateResult,
    FingerprintResult,
    GateDecision,
    PrepareResult,
    PromoteResult,
    ReportResult,
    SelectResult,
    ServingCheckResult,
    TrainResult,
    ValidateResult,
)

DAG_ID = "movie_genre_retrain"
POLL_SECONDS = 1.0
FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}
# The first ERROR line of a failed task (orchestration.wiring.failing_clearly): "<task> failed: <Class>: <reason>".
FAILURE_LINE = re.compile(
    r"\b(?P<task>[a-z_]+) failed: (?P<error>[A-Za-z_]\w*): (?P<reason>.*?)(?:\s+\[[\w.]+\][^\[]*)?$"
)
# Task order in the DAG, for the stage lines of a poll that saw several tasks finish.
ORDER = RETRAIN_TASKS
NAME_WIDTH = 16

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class Stage:
    """A finished task instance: its id (with its map index when mapped), state, seconds and XCom."""

    task_id: str
    map_index: int
    state: str
    seconds: float | None
    summary: Any

    @property
    def name(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


# ---------------------------------------------------------------- formatting: pure functions


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def drift_words(drift: Summary | None) -> str:
    """The data gate's drift part: checked against which version, and its verdict, or why it was skipped."""
    if not drift:
        return "drift not reported"
    if not drift.get("checked"):
        return f"drift skipped ({drift.get('reason') or 'no reason given'})"
    verdict = "within tolerance" if drift.get("passed") else "beyond tolerance"
    return f"drift checked against version {drift.get('served_version')}: {verdict}"


def data_gate_words(validated: ValidateResult) -> str:
    evaluated = sum(suite.get("evaluated", 0) for suite in validated.get("suites", {}).values())
    failed = len(validated.get("failed_expectations", []))
    if validated.get("success"):
        verdict = f"passed ({evaluated} expectations)"
    else:
        verdict = f"FAILED ({failed} of {evaluated} expectations)"
    return f"data gate {verdict}; {drift_words(validated.get('drift'))}"


def baselines_words(evaluation: EvaluateResult) -> str:
    baselines = evaluation.get("baselines_auc_micro") or {}
    names = {"tfidf_logreg": "TF-IDF", "embedding_logreg": "embedding", "baseline_average": "average"}
    return ", ".join(f"{names.get(name, name)} {_auc(value)}" for name, value in baselines.items())


def champion_words(decision: GateDecision) -> str:
    champion = decision.get("champion")
    if not champion:
        return "champion: none served"
    return f"champion: version {champion.get('version')} {_auc(champion.get('value'))}"


def stage_figure(stage: Stage, earlier: Mapping[str, Any]) -> str:
    """The key figure of a finished stage, from its summary (`earlier`: the summaries finished before it)."""
    if stage.state == "skipped":
        return "skipped"
    if stage.state == "upstream_failed":
        return "not run: an upstream stage failed"
    if stage.state != "success":
        return stage.state.upper()
    s = stage.summary
    if stage.task_id == "retrain_needed":  # the short-circuit's XCom: true, or nothing when it skips the rest
        fingerprinted = earlier.get("fingerprint") or {}
        if s or fingerprinted.get("retrain", True):
            return "retrain"
        return str(fingerprinted.get("reason"))
    figure = FIGURES.get(stage.task_id)
    if figure is not None:
        return figure(s)
    if isinstance(s, Mapping) and s.get("reason"):
        return str(s["reason"])
    return ""


# Each stage's figure from its result (`tasks.results`): typed, so a renamed key fails the type check.
def _module_figure(s: EmbeddingModuleResult) -> str:
    return f"{Path(s['path']).name} (fingerprint {s['fingerprint'][:12]})"


def _download_figure(s: DownloadResult) -> str:
    return f"{s['rows']} records, {_megabytes(s['csv_bytes'])}, sha256 {s['sha256'][:12]}"


def _prepare_figure(s: PrepareResult) -> str:
    return (
        f"{s['kept']} of {s['records']} movies kept "
        f"(train {s['train_rows']}, validation {s['validation_rows']}, test {s['test_rows']})"
    )


def _fingerprint_figure(s: FingerprintResult) -> str:
    if not s["retrain"]:  # the retrain_needed line right below gives the reason in full
        return f"unchanged since version {s['unchanged_since']}"
    return s["reason"]


def _embed_figure(s: EmbedResult) -> str:
    return f"{s['texts']} overviews, {s['from_cache']} from the cache, {s['computed']} embedded"


def _train_figure(s: TrainResult) -> str:
    warm = " (warm start)" if s["warm_start_from"] else ""
    return f"validation AUC {_auc(s['validation_auc_micro'])}, {s['epochs_run']} epochs{warm}"


def _select_figure(s: SelectResult) -> str:
    return f"candidate {s['candidate']['index']}, validation AUC {_auc(s['validation_auc_micro'])}"


def _evaluate_figure(s: EvaluateResult) -> str:
    return f"test AUC micro {_auc(s['auc_micro'])}, macro {_auc(s['auc_macro'])} on {s['test_rows']} movies"


def _gate_figure(s: GateDecision) -> str:
    return ("passed: " if s["passed"] else "refused: ") + s["reason"]


def _serving_check_figure(s: ServingCheckResult) -> str:
    return "passed: " + ", ".join(s["shapes"]) if s["passed"] else "FAILED"


def _promote_figure(s: PromoteResult) -> str:
    return f"version {s['version']} published"


def _report_figure(s: ReportResult) -> str:
    path = s["path"]
    return Path(path).name if path else (s.get("note") or "no report")


def _gate_alert_figure(s: Mapping[str, Any]) -> str:  # orchestration.alerts.alert_failed_gate's
    if not s.get("gate_failed"):
        return "no gate failed, no alert"
    return f"{s['gate_failed']} alert sent by {', '.join(s['sent_by']) or 'nobody (only logged)'}"


FIGURES: dict[str, Callable[[Any], str]] = {
    "embedding_module": _module_figure,
    "download": _download_figure,
    "prepare": _prepare_figure,
    "fingerprint": _fingerprint_figure,
    "embed": _embed_figure,
    "validate": lambda s: data_gate_words(s),
    "candidates": lambda s: f"{len(s)} candidate(s)",
    "train": _train_figure,
    "select_model": _select_figure,
    "evaluate": _evaluate_figure,
    "gate": _gate_figure,
    "serving_check": _serving_check_figure,
    "promote": _promote_figure,
    "report": _report_figure,
    "gate_alert": _gate_alert_figure,
}


def grouped_line(label: str, stages: Iterable[Stage]) -> str:
    """Stages that did not run (skipped, or upstream failed), in one line."""
    return f"{label:<{NAME_WIDTH}} {'':>8}  {', '.join(stage.name for stage in stages)}"


def stage_line(stage: Stage, earlier: Mapping[str, Any]) -> str:
    seconds = "" if stage.seconds is None else f"{stage.seconds:6.1f} s"
    return f"{stage.name:<{NAME_WIDTH}} {seconds:>8}  {stage_figure(stage, earlier)}".rstrip()


class RunSummaries(TypedDict, total=False):
    """The summaries of the run's stages that finished, by task."""

    download: DownloadResult
    prepare: PrepareResult
    fingerprint: FingerprintResult
    validate: ValidateResult
    evaluate: EvaluateResult
    gate: GateDecision
    promote: PromoteResult
    report: ReportResult


def summary_lines(summaries: RunSummaries, *, log_path: Path, failure: str | None = None) -> list[str]:
    """The run in a few lines: data, model, decision, version, report and log, from the stages' summaries
    (those that finished)."""
    lines = ["", "Summary"]
    downloaded, prepared = summaries.get("download"), summaries.get("prepare")
    validated, fingerprinted = summaries.get("validate"), summaries.get("fingerprint")
    evaluation, decision = summaries.get("evaluate"), summaries.get("gate")
    promoted, reported = summaries.get("promote"), summaries.get("report")
    if prepared:
        data = f"{prepared['kept']} of {prepared['records']} movies kept"
        if downloaded:
            data += f" from {downloaded['url']}"
        if validated:
            data += f"; {data_gate_words(validated)}"
        lines.append(f"  Data      {data}")
    if evaluation:
        model = (
            f"test AUC micro {_auc(evaluation['auc_micro'])} (macro {_auc(evaluation['auc_macro'])}); "
            f"baselines: {baselines_words(evaluation)}"
        )
        if decision:
            model += f"; {champion_words(decision)}"
        lines.append(f"  Model     {model}")
    skipped = fingerprinted if fingerprinted and not fingerprinted["retrain"] else None
    if skipped:
        decision_line = f"  Decision  nothing retrained: unchanged since version {skipped['unchanged_since']}"
        gate_again = skipped.get("gate_again")
        lines.append(f"{decision_line}; {gate_again}" if gate_again else decision_line)
    elif decision:
        lines.append(f"  Decision  {'promote' if decision['passed'] else 'refuse'}: {decision['reason']}")
    if promoted:
        lines.append(f"  Version   {promoted['version']} promoted to {promoted['path']}")
    elif skipped:
        lines.append(f"  Version   {skipped['unchanged_since']} stays served")
    else:
        lines.append("  Version   nothing promoted")
    if reported and reported.get("path"):
        lines.append(f"  Report    {reported['path']}")
    elif reported:
        lines.append(f"  Report    {reported.get('note') or 'none'}")
    lines.append(f"  Log       {log_path}")
    if failure:
        lines.append(failure)
    return lines


def failure_reason(log_lines: Iterable[str], failed_tasks: Iterable[str]) -> str | None:
    """`<task> failed: <ErrorClass>: <reason>` of the first failed task in the log, or None if none is there."""
    failed = set(failed_tasks)
    for line in log_lines:
        match = FAILURE_LINE.search(line)
        if match and (not failed or match["task"] in failed):
            return f"{match['task']} failed: {match['error']}: {match['reason'].strip()}"
    return None


EXCEPTION_LINE = re.compile(r"^(?:[a-z_][\w]*\.)*(?P<error>[A-Z]\w*(?:Error|Exception)): (?P<reason>.+)$")


def last_exception(log_lines: Iterable[str]) -> str | None:
    """`<ErrorClass>: <reason>` of the last traceback in the log (the last line of a traceback names it)."""
    found = None
    for line in log_lines:
        match = EXCEPTION_LINE.match(line.rstrip())
        if match:
            found = f"{match['error']}: {match['reason']}"
    return found


def order_key(stage: Stage) -> tuple[int, int]:
    return (ORDER.index(stage.task_id) if stage.task_id in ORDER else len(ORDER), stage.map_index)


# ---------------------------------------------------------------- the metadata DB


class MetadataDb:
    """Read-only queries on Airflow's metadata DB (the URL of `[database] sql_alchemy_conn`)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
        self.engine = create_engine(url, connect_args=connect_args)

    def _rows(self, query: str, **params: Any) -> list[Any]:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        for attempt in range(5):
            try:
                with self.engine.connect() as connection:
                    return list(connection.execute(text(query), params))
            except OperationalError:  # "database is locked" while Airflow writes: ask again
                if attempt == 4:
                    raise
                time.sleep(0.5)
        return []

    def last_run_pk(self, dag_id: str) -> int:
        rows = self._rows("SELECT max(id) FROM dag_run WHERE dag_id = :dag", dag=dag_id)
        return int(rows[0][0] or 0)

    def new_run(self, dag_id: str, after_pk: int) -> str | None:
        rows = self._rows(
            "SELECT run_id FROM dag_run WHERE dag_id = :dag AND id > :pk ORDER BY id LIMIT 1", dag=dag_id, pk=after_pk
        )
        return rows[0][0] if rows else None

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self._rows("SELECT state FROM dag_run WHERE dag_id = :dag AND run_id = :run", dag=dag_id, run=run_id)
        return rows[0][0] if rows else None

    def finished(self, dag_id: str, run_id: str) -> list[Stage]:
        """The run's task instances in a final state, each with its return value."""
        rows = self._rows(
            "SELECT ti.task_id, ti.map_index, ti.state, ti.duration, x.value FROM task_instance ti "
            "LEFT JOIN xcom x ON x.dag_id = ti.dag_id AND x.run_id = ti.run_id AND x.task_id = ti.task_id "
            "AND x.map_index = ti.map_index AND x.key = 'return_value' "
            "WHERE ti.dag_id = :dag AND ti.run_id = :run",
            dag=dag_id,
            run=run_id,
        )
        return [
            Stage(task, int(index), str(state), None if seconds is None else float(seconds), _json(value))
            for task, index, state, seconds, value in rows
            if state in FINISHED
        ]


def _json(value: Any) -> Any:
    """An XCom value as stored: JSON text (SQLite) or already decoded (PostgreSQL's JSON column)."""
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def database_url() -> str:
    from airflow.configuration import conf

    return conf.get("database", "sql_alchemy_conn")


# ---------------------------------------------------------------- the run


def follow_run(
    command: list[str],
    log_path: Path,
    db: MetadataDb,
    out: Callable[[str], None],
    dag_id: str = DAG_ID,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run `command` (an `airflow dags test`) with its output appended to `log_path`, print each stage as it
    finishes, then the summary; 0 if the run succeeded."""
    before = db.last_run_pk(dag_id)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env or os.environ)
        )
    run_id: str | None = None
    printed: set[tuple[str, int]] = set()
    summaries: dict[str, Any] = {}

    not_run: dict[str, list[Stage]] = {"skipped": [], "upstream_failed": []}

    def flush_not_run() -> None:
        for state, label in (("upstream_failed", "not run"), ("skipped", "skipped")):
            if not_run[state]:
                out(grouped_line(label, sorted(not_run[state], key=order_key)))
                not_run[state] = []

    def report_finished() -> list[Stage]:
        stages = sorted(db.finished(dag_id, run_id), key=order_key) if run_id else []
        for stage in stages:
            if (stage.task_id, stage.map_index) in printed:
                continue
            printed.add((stage.task_id, stage.map_index))
            if stage.state in not_run:
                not_run[stage.state].append(stage)
                continue
            flush_not_run()
            if stage.state == "success" and stage.map_index < 0:
                summaries[stage.task_id] = stage.summary
            out(stage_line(stage, summaries))
        return stages

    while process.poll() is None:
        time.sleep(POLL_SECONDS)
        run_id = run_id or db.new_run(dag_id, before)
        report_finished()
    run_id = run_id or db.new_run(dag_id, before)
    stages = report_finished()
    flush_not_run()
    state = db.run_state(dag_id, run_id) if run_id else None
    failed = [stage.task_id for stage in stages if stage.state == "failed"]
    failure = None
    if state != "success" or process.returncode != 0:
        log_lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        failure = failure_reason(log_lines, failed)
        if failure is None:
            where = ", ".join(failed) or "airflow dags test"
            reason = last_exception(log_lines) or f"the run ended {state or 'before it started'}; see {log_path}"
            failure = f"{where} failed: {reason}"
    for line in summary_lines(cast(RunSummaries, summaries), log_path=log_path, failure=failure):
        out(line)
    return 0 if failure is None else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.run_console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", default="{}", help="the run's params as JSON")
    parser.add_argument("--log", type=Path, default=None, help="Airflow's log (default: $AIRFLOW_HOME/make-run.log)")
    parser.add_argument("--dag", default=DAG_ID)
    args = parser.parse_args(argv)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        conf = json.loads(args.conf)
    except ValueError as err:
        out(f"run failed: CONF is not JSON: {err}")
        return 2
    airflow_home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    log_path = (args.log or airflow_home / "make-run.log").resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    out(f"Running {args.dag} through Airflow; its full log: {log_path}")
    airflow = str(Path(sys.executable).parent / "airflow")
    with log_path.open("ab") as log:
        migrated = subprocess.run([airflow, "db", "migrate"], stdout=log, stderr=subprocess.STDOUT, check=False)
    if migrated.returncode != 0:
        out(f"airflow db migrate failed (exit {migrated.returncode}); see {log_path}")
        return 1
    command = [airflow, "dags", "test", args.dag, "--conf", json.dumps(conf)]
    return follow_run(command, log_path, MetadataDb(database_url()), out, dag_id=args.dag)


if __name__ == "__main__":
    sys.exit(main())
