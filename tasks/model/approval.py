"""What an approver reads before a model is promoted: the body (markdown) of the retrain DAG's approval
request, built from the summaries of the stages that ran before it.

It shows the model gate's decision, the challenger against the served model (the champion) and the
baselines, the data's drift against the served version's training data (the validate summary's
`drift`), a link to the run's report on the Genre models page (written when the run ends, whatever the
answer), and where the run's files are on the server. Plain text from summaries and the API's base URL
(which the caller reads from Airflow's config): no Airflow, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from tasks.results import EvaluateResult, GateDecision
from tasks.run_folder import RunFolder

# Where the Genre models page (orchestration/genre_models, mounted by the api-server) serves a run's files:
# below this, at their paths in the run folder.
RUN_PAGES = "/genre-models/runs/{run_id}/"


def approval_subject(run_id: str, gate: GateDecision) -> str:
    """One line: what to decide, on which run, with the gate metric."""
    return f"Promote the model of run {run_id}? {gate['metric']} {_auc(gate['challenger'])}"


def approval_body(
    *,
    run_id: str,
    folder: RunFolder,
    gate: GateDecision,
    evaluation: EvaluateResult | None,
    drift: Mapping[str, Any] | None,
    timeout_hours: float,
    base_url: str | None,
) -> str:
    """The approval request's markdown: gate decision, comparison table, drift (the data gate's, None when
    it reported none), the run's files (with a link to its report below `base_url`, Airflow's
    `[api] base_url`, when it is set)."""
    sections = [
        f"**Model gate:** {'passed' if gate['passed'] else 'failed'}: {gate['reason']}",
        "### Challenger, champion and baselines\n\n" + comparison_table(gate, evaluation),
        "### Drift against the served version's training data\n\n" + drift_text(drift),
        "### Files of this run\n\n" + files_text(folder, run_id, base_url),
        f"Approve to promote this model now; Reject to keep the served model. Without an answer within "
        f"{timeout_hours:g} h the model is rejected. Run `{run_id}`.",
    ]
    return "\n\n".join(sections) + "\n"


def comparison_table(gate: GateDecision, evaluation: EvaluateResult | None) -> str:
    """A markdown table: the challenger's test AUCs, the champion's gate metric (scored by evaluate on the
    same test split), each baseline's micro AUC, and each one's difference to the challenger."""
    metric = gate["metric"]
    challenger = gate["challenger"]
    rows = [("challenger (this run)", _auc(challenger), "")]
    champion = gate["champion"]
    if champion is None:
        rows.append(("champion", "none served", ""))
    elif champion.get("value") is None:
        rows.append((f"champion (version {champion['version']})", f"not comparable: {champion.get('note')}", ""))
    else:
        value = champion["value"]
        rows.append((f"champion (version {champion['version']})", _auc(value), _diff(challenger, value)))
    header = f"| model | {metric} | challenger minus it |\n| --- | --- | --- |"
    lines = [header, *(f"| {name} | {value} | {diff} |" for name, value, diff in rows)]
    if evaluation is None:
        return "\n".join(lines)
    other = evaluation["auc_macro"] if metric == "auc_micro" else evaluation["auc_micro"]
    if other is not None:
        lines.append(f"\nChallenger {'auc_macro' if metric == 'auc_micro' else 'auc_micro'}: {_auc(other)}.")
    baselines = evaluation["baselines_auc_micro"]
    if baselines:
        mine = evaluation["auc_micro"]
        lines.append("\n| baseline | auc_micro | challenger minus it |\n| --- | --- | --- |")
        lines += [f"| {name} | {_auc(value)} | {_diff(mine, value)} |" for name, value in baselines.items()]
    return "\n".join(lines)


def drift_text(drift: Mapping[str, Any] | None) -> str:
    """The drift verdict and its measures, or why drift was not checked."""
    if not drift:
        return "No drift summary: the data gate did not report one."
    if not drift.get("checked"):
        return f"Not checked: {drift.get('reason') or 'no reason given'}."
    verdict = "within the tolerances" if drift.get("passed") else "outside a tolerance"
    lines = [f"Against version {drift.get('served_version')}'s training data: {verdict}.", ""]
    for name, value in (drift.get("measures") or {}).items():
        lines.append(f"- {name}: {_measure(value)}")
    return "\n".join(lines).rstrip()


def report_url(base_url: str, run_id: str, folder: RunFolder) -> str:
    """The run's report.html as the Genre models page serves it, below the API's `base_url` (which may
    end in a base path)."""
    return base_url.rstrip("/") + RUN_PAGES.format(run_id=quote(run_id, safe="")) + folder.relative(folder.report)


def files_text(folder: RunFolder, run_id: str, base_url: str | None) -> str:
    """A link to the run's report first (an approver has a browser, seldom a shell on the server), then
    where the run's report, metrics, Data Docs and approval record are on the server (some once written)."""
    if base_url:
        report = f"- Report: [report.html]({report_url(base_url, run_id, folder)}) (written when the run ends)"
    else:
        report = "- Report: no link, Airflow's `[api] base_url` is not set (the file is written when the run ends)"
    return "\n".join(
        [
            report,
            f"- Report file: `{folder.report}`",
            f"- Metrics: `{folder.metrics}`",
            f"- Data Docs: `{folder.validation.data_docs_index}`",
            f"- This decision, once made: `{folder.approval}`",
        ]
    )


def _auc(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def _diff(mine: Any, theirs: Any) -> str:
    return "" if mine is None or theirs is None else f"{float(mine) - float(theirs):+.4f}"


def _measure(value: Any) -> str:
    if isinstance(value, Mapping):  # the largest genre change: {"genre": ..., "change": ...}
        change = value.get("change")
        points = "n/a" if change is None else f"{100 * float(change):+.1f} points"
        return f"{value.get('genre')} {points}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)
