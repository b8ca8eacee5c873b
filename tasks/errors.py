"""Errors that say whether retrying can help.

A `PermanentError` means the input or a quality gate is wrong: retrying the task would only fail again,
so the DAG turns it into a no-retry failure. Anything else (network hiccups, a killed process) is left
to Airflow's retries.
"""


class PermanentError(Exception):
    """Retrying cannot fix this: bad input, bad configuration or a failed gate."""


class ConfigError(PermanentError):
    """A run parameter or setting is invalid."""


class DownloadError(PermanentError):
    """The dataset URL answered, but not with a CSV we can use."""


class DataError(PermanentError):
    """The dataset's content is unusable (missing columns, nothing left to train on, ...)."""


class DataGateError(PermanentError):
    """The data gate: one or more Great Expectations expectations failed."""

    def __init__(self, message: str, failed_expectations: list[str]):
        super().__init__(message)
        self.failed_expectations = failed_expectations


class ModelGateError(PermanentError):
    """The model gate: the evaluation metric is below its threshold."""


class ExportError(PermanentError):
    """The exported SavedModel does not answer as the trained model did."""


class ServingCheckError(PermanentError):
    """The exported SavedModel does not answer its serving signature correctly."""


class ChampionError(PermanentError):
    """The model in production cannot be scored, so the challenger cannot be compared with it."""
