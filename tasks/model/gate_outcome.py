"""The outcome of a run's quality gates, read from its artifact folder: which gate refused the run, why,
and its figures, each in a line that reads on its own. The gate alert sends it; the report shows the
failed expectations the same way.

The data gate (the `validate` task) failed when `validation/results.json` holds an unmet expectation; the
model gate (the `gate` task) when its decision, `gate.json`, did not pass. A run that failed elsewhere,
or whose champion could not be scored, has no gate decision: None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.artifacts import read_json
from tasks.run_folder import RunFolder

# The DAG tasks (the pipeline's steps) that are the quality gates.
DATA_GATE_TASK = "validate"
MODEL_GATE_TASK = "gate"
# Expectation arguments that are plumbing, not bounds.
NOT_BOUNDS = frozenset({"batch_id", "result_format", "column", "include_config", "catch_exceptions"})


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation the data gate found unmet, in words."""

    suite: str
    expectation: str  # its type, e.g. expect_table_row_count_to_be_between
    column: str | None
    observed: str  # empty when GX reported no value (e.g. expect_column_to_exist)
    expected: str  # the bounds, e.g. "at least 1000"; empty when it has none
    why: str | None  # the suite's meta.why: what the expectation protects against

    @property
    def figure(self) -> str:
        """One line that reads on its own, e.g. in an alert."""
        target = f" on column {self.column}" if self.column else ""
        pairs = (("observed", self.observed), ("expected", self.expected))
        found = [f"{label} {text}" for label, text in pairs if text]
        return f"suite {self.suite}, {self.expectation}{target}: {', '.join(found) or 'not met'}"


@dataclass(frozen=True)
class GateFailure:
    """A quality gate's refusal: the task that refused (`DATA_GATE_TASK` or `MODEL_GATE_TASK`), why, and
    its figures."""

    task_id: str
    reason: str
    figures: list[str] = field(default_factory=list)


def gate_failure(folder: RunFolder) -> GateFailure | None:
    """Which quality gate failed in this run, its reason and its figures; None when none failed."""
    failed = failed_expectations(_read_if_present(folder.validation.results) or {})
    if failed:
        suites = sorted({f.suite for f in failed})
        # A drift failure reads better as the drift check words it (field, now, then, tolerance).
        drift = _read_if_present(folder.validation.drift) or {}
        worded = set(drift.get("suites", [])) if drift.get("failures") else set()
        return GateFailure(
            task_id=DATA_GATE_TASK,
            reason=f"{len(failed)} expectation(s) not met in suite(s) {', '.join(suites)}",
            figures=[f.figure for f in failed if f.suite not in worded]
            + [f"drift: {failure}" for failure in drift.get("failures", [])],
        )
    decision = _read_if_present(folder.gate)
    if decision is not None and not decision.get("passed", False):
        return GateFailure(task_id=MODEL_GATE_TASK, reason=decision["reason"], figures=model_gate_figures(decision))
    return None


def model_gate_figures(decision: Mapping[str, Any]) -> list[str]:
    """The model gate's decision (as tasks/model/gate.py writes it), one comparison per line."""
    metric, value, threshold = decision["metric"], decision["challenger"], decision["threshold"]
    if value is None:
        figures = [f"{metric} could not be computed on the test split"]
    else:
        relation = "<" if value < threshold else ">="
        figures = [f"{metric} {value:.4f} {relation} auc_threshold {threshold:.4f}"]
    champion = decision.get("champion")
    if champion is None:
        figures.append("no model in production: judged on the threshold alone")
    elif champion.get("value") is None:
        figures.append(
            f"served version {champion['version']} not comparable ({champion.get('note')}): "
            "judged on the threshold alone"
        )
    else:
        drop = decision["max_auc_drop"]
        figures.append(
            f"served version {champion['version']}: {metric} {champion['value']:.4f}, max_auc_drop {drop:.4f} "
            f"(a challenger needs at least {champion['value'] - drop:.4f})"
        )
    return figures


def failed_expectations(results: Mapping[str, Any]) -> list[FailedExpectation]:
    """Every unmet expectation in a `validation/results.json` (suite name → GX validation result)."""
    return [
        _failed_expectation(suite, result)
        for suite, suite_result in sorted(results.items())
        for result in suite_result.get("results", [])
        if not result.get("success", False)
    ]


def _failed_expectation(suite: str, result: Mapping[str, Any]) -> FailedExpectation:
    config = result.get("expectation_config", {})
    kwargs = config.get("kwargs", {})
    return FailedExpectation(
        suite=suite,
        expectation=str(config.get("type", "unknown expectation")),
        column=kwargs.get("column"),
        observed=_observed(result),
        expected=_bounds(str(config.get("type", "")), kwargs),
        why=config.get("meta", {}).get("why"),
    )


def _observed(result: Mapping[str, Any]) -> str:
    """What GX saw: an aggregate's value, or how many values broke a per-value expectation."""
    exception = result.get("exception_info", {})
    if exception.get("raised_exception"):
        return f"an error ({exception.get('exception_message')})"
    found = result.get("result", {})
    if "observed_value" in found:
        return _value(found["observed_value"])
    if "unexpected_count" in found:
        examples = found.get("partial_unexpected_list") or []
        sample = f", e.g. {_value(examples[:5])}" if examples else ""
        return (
            f"{found['unexpected_count']} of {found.get('element_count', '?')} values unexpected "
            f"({found.get('unexpected_percent') or 0:.2f}%){sample}"
        )
    return ""


def _bounds(expectation: str, kwargs: Mapping[str, Any]) -> str:
    """The expectation's bounds in words: "between 10 and 5000 for at least 98% of values"."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    parts = []
    if low is not None and high is not None:
        parts.append(f"between {_value(low)} and {_value(high)}")
    elif low is not None:
        parts.append(f"at least {_value(low)}")
    elif high is not None:
        parts.append(f"at most {_value(high)}")
    if "value_set" in kwargs:
        relation = "not in" if "not_be_in_set" in expectation else "in"
        parts.append(f"values {relation} {_value(kwargs['value_set'])}")
    rest = {k: v for k, v in kwargs.items() if k not in NOT_BOUNDS | {"min_value", "max_value", "value_set", "mostly"}}
    parts += [f"{name}={_value(value)}" for name, value in sorted(rest.items())]
    if "mostly" in kwargs:
        parts.append(f"for at least {kwargs['mostly'] * 100:.4g}% of values")
    return " ".join(parts)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _read_if_present(path: Path) -> Any:
    return read_json(path) if path.is_file() else None
