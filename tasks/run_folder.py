"""Every file of a run's artifact folder (`$GENRE_ARTIFACTS_DIR/runs/<run folder name>/`), named once.

Stages write there and later stages, the report, the alerts, the approval request and the Genre models
page read there; each asks these classes for a path instead of spelling a file name. The layout:

    raw/movies_metadata.csv          download
    prepared/                        prepare (its tables: `tasks.data.prepare`)
    validation/results.json          validate: each suite's GX result
    validation/data_profile.json     validate: this data's profile (kept beside a promoted version too)
    validation/drift.json            validate: the drift measures against the served version's data
    validation/data_docs/index.html  validate: GX's Data Docs site
    candidates/<i>/                  train: candidate i's model and training record
    metrics.json                     evaluate: the challenger, the baselines and the champion
    predictions.npz                  evaluate: the test labels and every model's probabilities
    baselines.npz                    evaluate: the baselines' weights (kept beside a promoted version too)
    gate.json                        gate: the model gate's decision
    approval.json                    approval: the decision, who made it and why
    report.html                      report
    alerts_sent/                     alerts: one marker per alerted task try
    stages/<task>.json               every task: what it returned or why it failed (`tasks.stage_records`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Names a promoted version's folder uses too (promotion copies these files beside its manifest).
PROFILE_FILE = "data_profile.json"
BASELINES_FILE = "baselines.npz"


@dataclass(frozen=True)
class ValidationFolder:
    """`validation/`: written whole by the data gate (under a temporary name, then renamed)."""

    path: Path

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def profile(self) -> Path:
        return self.path / PROFILE_FILE

    @property
    def drift(self) -> Path:
        return self.path / "drift.json"

    @property
    def data_docs(self) -> Path:
        return self.path / "data_docs"

    @property
    def data_docs_index(self) -> Path:
        return self.data_docs / "index.html"


@dataclass(frozen=True)
class RunFolder:
    """One run's artifact folder."""

    path: Path

    @property
    def raw(self) -> Path:
        return self.path / "raw"

    @property
    def prepared(self) -> Path:
        return self.path / "prepared"

    @property
    def validation(self) -> ValidationFolder:
        return ValidationFolder(self.path / "validation")

    @property
    def candidates(self) -> Path:
        return self.path / "candidates"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions.npz"

    @property
    def baselines(self) -> Path:
        return self.path / BASELINES_FILE

    @property
    def gate(self) -> Path:
        return self.path / "gate.json"

    @property
    def approval(self) -> Path:
        return self.path / "approval.json"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    @property
    def alerts_sent(self) -> Path:
        return self.path / "alerts_sent"

    @property
    def stages(self) -> Path:
        return self.path / "stages"

    def stage_record(self, name: str) -> Path:
        """The record of one task instance (`name`: its task id, or `train[0]` for a mapped one)."""
        return self.stages / f"{name}.json"

    def relative(self, path: Path) -> str:
        """`path` relative to the run folder, as a URL path (report.html's links, the page's routes)."""
        return path.relative_to(self.path).as_posix()
