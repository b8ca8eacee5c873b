"""The DAG file: imports cleanly, wires the stages in order, parses fast, offers a typed trigger form."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from tasks.pipeline import RETRAIN_TASKS
from tests.sample_data import PROJECT_ROOT

DAG_ID = "movie_genre_retrain"
# The chain each task waits for: the declared order less the module (built beside download) and the
# teardowns (report, gate_alert), which run whatever happened.
STAGES = [task for task in RETRAIN_TASKS if task not in ("embedding_module", "report", "gate_alert")]


def test_stages_run_in_order(dag) -> None:
    for upstream, downstream in itertools.pairwise(STAGES):
        assert upstream in dag.get_task(downstream).upstream_task_ids, f"{upstream} must precede {downstream}"
    assert "embedding_module" in dag.get_task("train").upstream_task_ids
    assert set(dag.task_ids) == set(RETRAIN_TASKS), "the DAG's tasks are the declared ones"


def test_an_unchanged_week_skips_everything_that_learns_or_publishes(dag) -> None:
    short_circuit = dag.get_task("retrain_needed")
    below = short_circuit.get_flat_relative_ids(upstream=False)
    assert set(STAGES[STAGES.index("embed") :]) <= below, "nothing below it runs when it says no"
    assert {task_id for task_id in below if dag.get_task(task_id).is_teardown} == {"report", "gate_alert"}
    assert short_circuit.upstream_task_ids == {"fingerprint"}


def test_report_then_gate_alert_run_whatever_happened_without_deciding_the_run_state(dag) -> None:
    assert dag.get_task("report").upstream_task_ids == {"promote"}
    assert dag.get_task("gate_alert").upstream_task_ids == {"report"}, "a gate's alert points at the report"
    for task_id in ("report", "gate_alert"):
        task = dag.get_task(task_id)
        assert task.is_teardown and not task.on_failure_fail_dagrun, task_id
        assert task.trigger_rule == "all_done_setup_success" and not task.upstream_list[0].is_setup


def test_graph_shows_the_flow_not_an_edge_from_every_stage(dag) -> None:
    assert dag.get_task("promote").upstream_task_ids == {"gate", "select_model", "approval"}


def test_an_optional_approval_waits_between_the_checks_and_promote(dag) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    approval, promote = dag.get_task("approval"), dag.get_task("promote")
    assert isinstance(approval, ApprovalOperator)
    assert approval.upstream_task_ids == {"serving_check"} and approval.downstream_task_ids == {"promote"}
    assert {"gate", "serving_check"} <= approval.get_flat_relative_ids(upstream=True)
    assert approval.retries == 0, "a retry would ask the approvers again"
    assert approval.defaults == ["Reject"], "no answer before the timeout rejects"
    assert approval.fail_on_reject is False, "a rejection is a decision, not a failure: the run succeeds"
    assert approval.ignore_downstream_trigger_rules is False, "a rejection skips promote, not the report"
    # Not required, the approval skips itself: promote must still run after a passed gate and check,
    # and must not run after a failed one.
    assert promote.trigger_rule == "none_failed_min_one_success"


def test_the_approvals_outcome_says_who_decided_and_why() -> None:
    from orchestration.approval import response_outcome

    at, day = datetime(2026, 12, 2, 13, 0, tzinfo=UTC), timedelta(hours=24)
    admin = {"id": "admin", "name": "admin"}
    approved = response_outcome(
        {"chosen_options": ["Approve"], "responded_by_user": admin, "responded_at": at}, "Approve", day
    )
    assert (approved["decision"], approved["promote"], approved["by"]) == ("approved", True, "admin")
    assert approved["reason"] == "approved by admin: promoting" and approved["at"] == at.isoformat()
    rejected = response_outcome(
        {"chosen_options": ["Reject"], "responded_by_user": admin, "responded_at": at}, "Approve", day
    )
    assert (rejected["promote"], rejected["timed_out"]) == (False, False)
    assert rejected["reason"] == "rejected by admin: promotion skipped, the served model is unchanged"
    # The scheduler's timeout sweep applies the default, Reject, with no user.
    timed_out = {"chosen_options": ["Reject"], "responded_by_user": None, "responded_at": at, "timedout": True}
    outcome = response_outcome(timed_out, "Approve", timedelta(minutes=90))
    assert (outcome["decision"], outcome["promote"], outcome["timed_out"], outcome["by"]) == (
        "rejected",
        False,
        True,
        None,
    )
    assert outcome["reason"].startswith("no answer within 1.5 h: rejected by default; promotion skipped")


def test_each_summary_is_one_xcom(dag) -> None:
    for task in dag.tasks:
        assert task.multiple_outputs is False, task.task_id


def test_gates_do_not_retry(dag) -> None:
    assert dag.get_task("validate").retries == 0
    assert dag.get_task("gate").retries == 0
    assert dag.get_task("serving_check").retries == 0
    assert dag.get_task("download").retries > 0


def test_schedule_is_weekly_without_catchup(dag) -> None:
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    assert dag.catchup is False and dag.max_active_runs == 1
    sdk_timetable = dag.timetable
    # The scheduler's view of the same timetable: consecutive runs one week apart.
    timetable = CronTriggerTimetable(sdk_timetable.expression, timezone=sdk_timetable.timezone)
    restriction = TimeRestriction(earliest=datetime(2026, 1, 1, tzinfo=UTC), latest=None, catchup=False)
    first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    second = timetable.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=restriction)
    assert second.run_after - first.run_after == timedelta(days=7)


def test_trigger_form_has_typed_described_params(dag) -> None:
    params = dag.params
    for name in ("dataset_url", "auc_threshold", "embedding_module", "epochs", "batch_size", "seed"):
        param = params.get_param(name)
        assert param.description, f"{name} needs a description for the trigger form"
        assert param.schema.get("type"), f"{name} needs a JSON-schema type"
    assert params.get_param("auc_threshold").schema["maximum"] == 1


def test_dag_file_parses_fast_without_heavy_imports() -> None:
    """Parse the DAG file in a fresh interpreter that has Airflow loaded, as the dag-processor has."""
    probe = (
        "import sys, time, runpy; import airflow.sdk; from airflow.sdk import dag; t = time.perf_counter();"
        f"runpy.run_path({str(PROJECT_ROOT / 'dags' / 'movie_genre_retrain.py')!r});"
        "heavy = [m for m in ('tensorflow', 'great_expectations', 'pandas', 'sklearn') if m in sys.modules];"
        "print(time.perf_counter() - t, ','.join(heavy), sep='|')"
    )
    started = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    parse_seconds, heavy = output.strip().splitlines()[-1].split("|")
    print(f"\nDAG file parse: {float(parse_seconds):.3f} s (process {time.perf_counter() - started:.2f} s)")
    assert heavy == "", f"the DAG file imported {heavy} at parse time"


def test_stages_that_may_meet_transient_faults_are_retried(dag) -> None:
    for task_id in ("download", "embed", "train", "evaluate", "promote"):
        assert dag.get_task(task_id).retries > 0, task_id


def test_each_task_runs_its_step_from_the_one_pipeline(dag) -> None:
    """The DAG and the benchmark's direct runner share `tasks.pipeline`: every step is a task that calls it."""
    import inspect

    from tasks import pipeline

    assert set(dag.task_ids) - pipeline.AIRFLOW_TASKS == set(pipeline.STEPS)
    for task_id in pipeline.STEPS:
        body = inspect.getsource(dag.get_task(task_id).python_callable)
        assert f"steps.{task_id}(" in body, f"task {task_id} does not call its step"
