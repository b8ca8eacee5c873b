"""The approval request's text: what a person reads before approving a model for promotion, built from
the summaries the gate, evaluate and validate stages return."""

from __future__ import annotations

from pathlib import Path

from tasks.model.approval import approval_body, approval_subject, comparison_table, drift_text
from tasks.model.gate import decide
from tasks.run_folder import RunFolder

RUN_DIR = Path("/srv/artifacts/runs/manual__2026-12-02")
EVALUATION = {
    "auc_micro": 0.8912,
    "auc_macro": 0.8431,
    "test_rows": 824,
    "baselines_auc_micro": {"tfidf_logreg": 0.861, "embedding_logreg": 0.886},
    "path": str(RUN_DIR / "metrics.json"),
}
CHECKED_DRIFT = {
    "checked": True,
    "served_version": 3,
    "passed": True,
    "measures": {
        "length_distance": 0.0021,
        "new_share": 0.069,
        "embedding_drift": None,
        "genre_share_change": {"genre": "Thriller", "change": -0.003},
    },
}


def body(
    gate: dict,
    drift: dict | None = CHECKED_DRIFT,
    evaluation: dict | None = EVALUATION,
    run_id: str = "manual__2026-12-02",
    base_url: str | None = "https://airflow.example.org",
) -> str:
    return approval_body(
        run_id=run_id,
        folder=RunFolder(RUN_DIR),
        gate=gate,
        evaluation=evaluation,
        drift=drift,
        timeout_hours=24,
        base_url=base_url,
    )


def test_the_body_shows_the_decision_the_champion_the_baselines_the_drift_and_the_report() -> None:
    gate = decide("auc_micro", 0.8912, 0.8, {"version": 3, "value": 0.8900}, 0.005)
    text = body(gate)
    assert f"**Model gate:** passed: {gate['reason']}" in text
    assert "champion version 3 auc_micro 0.8900" in text, "the gate's own reason, in its words"
    assert "| challenger (this run) | 0.8912 |  |" in text
    assert "| champion (version 3) | 0.8900 | +0.0012 |" in text
    assert "| tfidf_logreg | 0.8610 | +0.0302 |" in text and "| embedding_logreg | 0.8860 | +0.0052 |" in text
    assert "Challenger auc_macro: 0.8431." in text
    assert "Against version 3's training data: within the tolerances." in text
    assert "- length_distance: 0.0021" in text and "- new_share: 0.069" in text
    assert "- genre_share_change: Thriller -0.3 points" in text and "- embedding_drift: n/a" in text
    assert f"`{RUN_DIR / 'report.html'}`" in text and f"`{RUN_DIR / 'validation/data_docs/index.html'}`" in text
    assert f"`{RUN_DIR / 'approval.json'}`" in text, "where the decision will be recorded"
    assert "within 24 h the model is rejected" in text


def test_the_report_is_linked_on_the_genre_models_page_before_the_server_paths() -> None:
    gate = decide("auc_micro", 0.8912, 0.8, None, 0.005)
    run_id = "manual__2026-12-02T12:55:04.065659+00:00"
    files = body(gate, run_id=run_id, base_url="https://example.org/airflow/").split("### Files of this run\n\n")[1]
    link = "https://example.org/airflow/genre-models/runs/manual__2026-12-02T12%3A55%3A04.065659%2B00%3A00/report.html"
    assert files.splitlines()[0] == f"- Report: [report.html]({link}) (written when the run ends)"
    assert f"- Report file: `{RUN_DIR / 'report.html'}`" in files
    unlinked = body(gate, base_url=None).split("### Files of this run\n\n")[1].splitlines()[0]
    assert unlinked.startswith("- Report: no link, Airflow's `[api] base_url` is not set")


def test_a_first_model_has_no_champion_and_the_gate_says_so() -> None:
    gate = decide("auc_macro", 0.84, 0.8, None, 0.005)
    table = comparison_table(gate, EVALUATION)
    assert "| model | auc_macro | challenger minus it |" in table
    assert "| champion | none served |  |" in table
    assert "Challenger auc_micro: 0.8912." in table, "the other AUC too"
    assert "no model in production: judged on the threshold alone" in body(gate)


def test_a_champion_with_other_genres_is_not_compared() -> None:
    gate = decide("auc_micro", 0.88, 0.8, {"version": 2, "value": None, "note": "it predicts ['Comedy']"}, 0.005)
    assert "| champion (version 2) | not comparable: it predicts ['Comedy'] |  |" in comparison_table(gate, None)


def test_drift_not_checked_or_missing_says_why() -> None:
    assert drift_text({"checked": False, "reason": "force: drift accepted"}) == "Not checked: force: drift accepted."
    assert drift_text(None) == "No drift summary: the data gate did not report one."
    failed = drift_text({**CHECKED_DRIFT, "passed": False})
    assert failed.startswith("Against version 3's training data: outside a tolerance.")
    assert "Not checked: nothing served." in body(
        decide("auc_micro", 0.9, 0.8, None, 0.0), {"checked": False, "reason": "nothing served"}
    )


def test_the_subject_names_the_run_and_the_gate_metric() -> None:
    gate = decide("auc_micro", 0.8912, 0.8, None, 0.005)
    assert approval_subject("manual__1", gate) == "Promote the model of run manual__1? auc_micro 0.8912"
