"""`make run`'s console: the retrain DAG once through `airflow dags test`, told in a few lines.

python -m orchestration.run_console [--conf JSON] [--log PATH]

Airflow's own output (hundreds of lines of Airflow, Great Expectations and TensorFlow logs) goes to the log
file, whose path is printed first. While the run goes on, the runner follows the records its tasks keep in
the run's folder (`tasks.stage_records`) and prints one line per stage as it finishes: its name, its
seconds and its key figure, read from the stage's summary (its XCom). Tasks that never ran (skipped, or
after a failure) write nothing: their states come from Airflow's CLI (`airflow tasks states-for-dag-run`)
once the run has ended. At the end it prints a short summary: the data, the model against its baselines and
the champion, the decision, the promoted version and where report.html is. A failed run ends with the
failing task's reason (`<task> failed: <ErrorClass>: <reason>`, from its record) as the last line, and
exits 1.

The formatting is in small pure functions of the stage summaries (`tasks.pipeline`), so tests check it on
real summaries without running Airflow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, cast

from tasks.config import RunConfig, Settings
from tasks.errors import ConfigError
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
from tasks.run_folder import RunFolder
from tasks.stage_records import StageError, StageRecord, read_stage_records, stage_name

DAG_ID = "movie_genre_retrain"
POLL_SECONDS = 1.0
FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}
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
        return stage_name(self.task_id, self.map_index)


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


def failure_line(stage: Stage, error: StageError | None) -> str:
    """`<task> failed: <ErrorClass>: <reason>`, from the failed task's record (or just its state)."""
    if error is None:
        return f"{stage.name} failed: the task ended {stage.state} without a record of why; see the log"
    return f"{stage.name} failed: {error['type']}: {error['reason']}"


def order_key(stage: Stage) -> tuple[int, int]:
    return (ORDER.index(stage.task_id) if stage.task_id in ORDER else len(ORDER), stage.map_index)


# ---------------------------------------------------------------- the run's own files


@dataclass
class RunRecords:
    """The records (`tasks.stage_records`) of the run `airflow dags test` starts: in the first new run
    folder with a record of this DAG at this logical date."""

    runs_dir: Path
    dag_id: str
    logical_date: datetime
    existing: frozenset[str] = frozenset()
    folder: RunFolder | None = None

    @classmethod
    def before_start(cls, runs_dir: Path, dag_id: str, logical_date: datetime) -> RunRecords:
        existing = frozenset(p.name for p in runs_dir.iterdir()) if runs_dir.is_dir() else frozenset()
        return cls(runs_dir, dag_id, logical_date, existing)

    def _ours(self, record: StageRecord) -> bool:
        date = record["logical_date"]
        if record["dag_id"] != self.dag_id or date is None:
            return False
        return datetime.fromisoformat(date) == self.logical_date

    def records(self) -> list[StageRecord]:
        if self.folder is None:
            if not self.runs_dir.is_dir():
                return []
            for path in sorted(self.runs_dir.iterdir()):
                folder = RunFolder(path)
                if path.name not in self.existing and any(map(self._ours, read_stage_records(folder))):
                    self.folder = folder
                    break
            else:
                return []
        return [record for record in read_stage_records(self.folder) if self._ours(record)]

    @property
    def run_id(self) -> str | None:
        found = self.records()
        return found[0]["run_id"] if found else None


def recorded_stage(record: StageRecord) -> Stage:
    return Stage(record["task_id"], record["map_index"], record["state"], record["seconds"], record["result"])


def task_states(airflow: str, dag_id: str, run_id: str, env: Mapping[str, str]) -> list[Stage]:
    """Every task instance of the run in its final state, from Airflow's CLI (`tasks states-for-dag-run`):
    those that never ran (skipped, upstream failed) write no record."""
    listed = subprocess.run(
        [airflow, "tasks", "states-for-dag-run", dag_id, run_id, "--output", "json"],
        capture_output=True,
        text=True,
        env=dict(env),
        check=False,
    )
    return parse_task_states(listed.stdout) if listed.returncode == 0 else []


def parse_task_states(stdout: str) -> list[Stage]:
    """The finished task instances in the CLI's JSON (its last line that is a JSON list: a warning or log
    line printed before it may start with "[" too); none if there is no such line."""
    for line in reversed(stdout.splitlines()):
        try:
            rows = json.loads(line)
        except ValueError:
            continue
        if isinstance(rows, list):
            return [
                Stage(row["task_id"], int(row.get("map_index") or -1), row["state"], None, None)
                for row in rows
                if row["state"] in FINISHED
            ]
    return []


# ---------------------------------------------------------------- the run


def follow_run(
    command: list[str],
    log_path: Path,
    run: RunRecords,
    out: Callable[[str], None],
    final_states: Callable[[str], list[Stage]],
    env: Mapping[str, str] | None = None,
) -> int:
    """Run `command` (an `airflow dags test`) with its output appended to `log_path`, print each stage as it
    finishes (from its record), then the summary; 0 if the run succeeded. `final_states(run_id)`: the
    run's task instances at the end, for those that never ran."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env or os.environ)
        )
    printed: set[tuple[str, int]] = set()
    summaries: dict[str, Any] = {}
    errors: dict[tuple[str, int], StageError | None] = {}
    not_run: dict[str, list[Stage]] = {"skipped": [], "upstream_failed": []}

    def flush_not_run() -> None:
        for state, label in (("upstream_failed", "not run"), ("skipped", "skipped")):
            if not_run[state]:
                out(grouped_line(label, sorted(not_run[state], key=order_key)))
                not_run[state] = []

    def report(stages: Iterable[Stage]) -> None:
        for stage in sorted(stages, key=order_key):
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

    def report_records() -> None:
        final = [record for record in run.records() if record["final"]]
        errors.update({(r["task_id"], r["map_index"]): r["error"] for r in final if r["state"] == "failed"})
        report(map(recorded_stage, final))

    while process.poll() is None:
        time.sleep(POLL_SECONDS)
        report_records()
    report_records()
    run_id = run.run_id
    ended = final_states(run_id) if run_id else []
    report(ended)
    flush_not_run()
    failure = None
    if process.returncode != 0:
        failed = sorted((stage for stage in ended if stage.state == "failed"), key=order_key)
        recorded = [stage for stage in failed if (stage.task_id, stage.map_index) in errors]
        if recorded or failed:
            first = (recorded or failed)[0]
            failure = failure_line(first, errors.get((first.task_id, first.map_index)))
        else:
            failure = f"airflow dags test failed (exit {process.returncode}) before the run ended; see {log_path}"
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
    settings = Settings.from_env()
    try:  # Airflow checks the params too, but only after its own start: a typo is told at once
        RunConfig.from_params(conf, settings)
    except ConfigError as err:
        out(f"run failed: {err}")
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
    # The run's logical date, given, so its records can be told from any other run's.
    logical_date = datetime.now(UTC)
    command = [airflow, "dags", "test", args.dag, logical_date.isoformat(), "--conf", json.dumps(conf)]
    run = RunRecords.before_start(settings.artifacts_dir / "runs", args.dag, logical_date)
    return follow_run(command, log_path, run, out, lambda run_id: task_states(airflow, args.dag, run_id, os.environ))


if __name__ == "__main__":
    sys.exit(main())
