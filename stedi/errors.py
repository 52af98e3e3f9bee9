"""The errors stedi raises at its boundaries. The CLI prints each as one line and exits 1."""

from dataclasses import dataclass


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none): what one line can say."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class StediError(Exception):
    """Base class: something the user can fix; the message says how."""


class ConfigError(StediError):
    """A setting is missing or invalid."""


class ContractError(StediError):
    """A table contract in catalog/ is malformed, or a job's output does not match its contract."""


class SourceError(StediError):
    """An ingest source is missing, empty, laid out wrongly or unreadable."""


class QueryError(StediError):
    """An ad-hoc SQL query is malformed or names an unknown table."""


class JobError(StediError):
    """A pipeline job failed; no table was changed by the run."""


@dataclass(frozen=True)
class Violation:
    """One privacy violation the audit found: which check, in which table, and what (counts and
    keyed hashes, never an email)."""

    check: str
    table: str
    detail: str

    def __str__(self) -> str:
        return f"{self.table}: {self.check}: {self.detail}"


class AuditError(StediError):
    """The privacy audit found violations; ``violations`` lists them."""

    def __init__(self, message: str, violations: list[Violation]):
        super().__init__(message)
        self.violations = violations
