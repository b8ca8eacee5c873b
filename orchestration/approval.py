"""The optional human approval before promotion: Airflow's human-in-the-loop `ApprovalOperator`, asked
only when the run's `require_approval` param is true.

- `require_approval` false: the task skips itself at once ("approval not required"); `promote`, whose
  trigger rule is `none_failed_min_one_success`, still runs after a passed gate and serving check.
- true: the approvers are notified through the alert channels (e-mail, Slack; see
  `orchestration.alerts.notify_approvers`), and the task waits (state `awaiting_input`, the run's
  "Required actions" in the UI) for Approve or Reject, at most `approval_timeout` hours.
- Approve: the task succeeds and `promote` runs.
- Reject, or no answer in time (the default option, Reject, is then applied by the scheduler): the
  task succeeds and skips `promote` (the operator's own skip); the served model and history are
  untouched. The decision, who made it and why are the task's XCom `decision`, its log, and
  `approval.json` in the run's artifact folder.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, cast

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from orchestration.wiring import finished_summary, record_stage, run_context
from tasks.artifacts import write_json
from tasks.model.approval import approval_body, approval_subject
from tasks.results import EvaluateResult, GateDecision, ValidateResult
from tasks.run_folder import RunFolder
from tasks.stage_records import StageError

log = logging.getLogger(__name__)

DECISION_XCOM = "decision"  # the XCom key of the outcome (a rejection ends the task before its return value)


class PromotionApproval(ApprovalOperator):
    """Approve or reject the run's model before `promote`; skipped when the run does not require it."""

    def __init__(self, **kwargs: Any) -> None:
        # Subject and body are the run's (set in execute); a timeout applies the default, Reject.
        super().__init__(subject="Promote this model?", defaults=self.REJECT, **kwargs)

    def execute(self, context: Any) -> Any:
        started = time.monotonic()
        run = run_context()
        if not run.config.require_approval:
            record(run.folder, {"required": False, "decision": "not required", "promote": True})
            skip = "approval not required (require_approval is false): promote goes on"
            record_stage("skipped", started, error=StageError(type="skip", reason=skip))
            raise AirflowSkipException(skip)
        gate, evaluation, validation = (
            cast(GateDecision | None, finished_summary("gate")),
            cast(EvaluateResult | None, finished_summary("evaluate")),
            cast(ValidateResult | None, finished_summary("validate")),
        )
        if gate is None:  # approval runs after a passed gate only: its summary is there unless cleared by hand
            raise AirflowFailException("no model gate decision in this run: nothing to approve")
        self.response_timeout = timedelta(hours=run.config.approval_timeout)
        self.subject = approval_subject(run.run_id, gate)
        self.body = approval_body(
            run_id=run.run_id,
            folder=run.folder,
            gate=gate,
            evaluation=evaluation,
            drift=validation["drift"] if validation else None,
            timeout_hours=run.config.approval_timeout,
            base_url=conf.get("api", "base_url", fallback=None),  # the report link's; None: paths only
        )
        record(run.folder, {"required": True, "decision": "waiting", "promote": False})
        from orchestration.alerts import notify_approvers

        notify_approvers(context, self.subject, self.body, self._link(context))
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" in event:  # not a response (a timeout has a default): the operator raises its error
            return super().execute_complete(context=context, event=event)
        run = run_context()  # a new process: only the DAG file's operator, not execute's changes to it
        outcome = response_outcome(event, self.APPROVE, timedelta(hours=run.config.approval_timeout))
        # Recorded before the operator acts: on Reject it skips promote by raising, so nothing after runs
        # and its return value is never pushed.
        record(run.folder, outcome)
        record_stage("success", time.monotonic(), result=outcome)  # its seconds: those after the answer
        context["ti"].xcom_push(key=DECISION_XCOM, value=outcome)
        (log.info if outcome["promote"] else log.warning)("approval: %s", outcome["reason"])
        super().execute_complete(context=context, event=event)  # Reject: skips promote (raises)
        return outcome

    def _link(self, context: Any) -> str | None:
        try:
            return self.generate_link_to_ui_from_context(context=context)
        except ValueError as err:  # no [api] base_url configured
            log.info("no link to the required action: %s", err)
            return None


def response_outcome(event: dict[str, Any], approve: str, timeout: timedelta | None) -> dict[str, Any]:
    """What the approval decided, from the response event: approved or not, by whom, when, and why."""
    approved = list(event.get("chosen_options") or []) == [approve]
    by = event.get("responded_by_user") or None
    name = by.get("name") if isinstance(by, dict) else by
    timed_out = bool(event.get("timedout")) or (not approved and by is None)
    at = event.get("responded_at")
    return {
        "required": True,
        "decision": "approved" if approved else "rejected",
        "promote": approved,
        "by": name,
        "at": at.isoformat() if isinstance(at, datetime) else at,
        "timed_out": timed_out,
        "reason": decision_reason(approved, timed_out, name, timeout),
    }


def decision_reason(approved: bool, timed_out: bool, by: Any, timeout: timedelta | None) -> str:
    """The decision in a sentence, as the log, the XCom and approval.json keep it."""
    name = by or "someone"
    if approved:
        return f"approved by {name}: promoting"
    if timed_out:
        hours = timeout.total_seconds() / 3600 if timeout else 0
        return f"no answer within {hours:g} h: rejected by default; promotion skipped, the served model is unchanged"
    return f"rejected by {name}: promotion skipped, the served model is unchanged"


def record(folder: RunFolder, outcome: dict[str, Any]) -> None:
    """Keep the approval's state in the run's artifact folder, beside its report."""
    write_json(folder.approval, outcome)
