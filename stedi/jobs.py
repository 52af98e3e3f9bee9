"""The jobs of ``pipelines/``: each declared once, as a :class:`Job` (its inputs, its output table,
its pure transform and what incremental runs may rely on), loaded once per process in dependency
order by :func:`load_jobs`.
"""

from __future__ import annotations

import functools
import graphlib
import hashlib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import narwhals as nw

import pipelines
from stedi import privacy
from stedi.contracts import Contract, contract, contract_digest
from stedi.errors import JobError

#: The in-memory pseudonym map a job may take as an input (email -> customer_key, subject_key).
PSEUDONYMS = "customer_pseudonyms"

#: Run settings passed to the transforms that declare them, and their defaults.
DEFAULT_PARAMS: Mapping[str, str] = {"consent_scope": "all-history"}



@dataclass(frozen=True)
class Job:
    """One job of ``pipelines/``: its inputs, its output table and its pure transform."""

    name: str  # the module's name in pipelines/
    inputs: tuple[str, ...]
    output: str
    transform: Callable[..., nw.LazyFrame]
    code_hash: str  # of the module, the privacy rules and the output's contract
    parameters: tuple[str, ...] = ()  # keyword-only parameters of the transform: run settings
    appends: tuple[str, ...] = ()  # inputs the transform maps row by row (see stedi.incremental)
    folds: str | None = None  # the input whose new rows ``fold`` takes into the rows before
    fold: Callable[..., nw.LazyFrame] | None = None

    @property
    def contract(self) -> Contract:
        return contract(self.output)


def job(
    transform: Callable[..., nw.LazyFrame],
    *,
    inputs: tuple[str, ...],
    output: str,
    appends: tuple[str, ...] = (),
    folds: str | None = None,
    fold: Callable[..., nw.LazyFrame] | None = None,
) -> Job:
    """Declare a job (in its module of ``pipelines/``, as ``JOB = job(transform, ...)``): its
    inputs (tables, or :data:`PSEUDONYMS`), its output table, and for incremental runs the inputs
    it maps row by row (``appends``) or the one whose new rows ``fold`` takes into the rows before
    (``folds``). Its name and code fingerprint are filled in by :func:`load_jobs`; its run
    settings are the transform's keyword-only parameters."""
    parameters = tuple(p.name for p in inspect.signature(transform).parameters.values() if p.kind is p.KEYWORD_ONLY)
    if (folds is None) != (fold is None):
        raise JobError(f"job {output}: `folds` and `fold` go together")
    return Job("", tuple(inputs), output, transform, "", parameters, tuple(appends), folds, fold)


def _code_hash(*modules: ModuleType, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def load_jobs(names: tuple[str, ...] = pipelines.JOBS) -> list[Job]:
    """The jobs of ``pipelines/`` in dependency order (ties keep the order of ``pipelines.JOBS``).
    Loaded once per process: a caller must not change the list it gets."""
    jobs = {}
    for name in names:
        module = importlib.import_module(f"pipelines.{name}")
        declared = getattr(module, "JOB", None)
        if not isinstance(declared, Job):
            raise JobError(f"pipelines/{name}.py declares no JOB = job(transform, inputs=..., output=...)")
        jobs[declared.output] = replace(
            declared, name=name, code_hash=_code_hash(module, privacy, extra=contract_digest(declared.output))
        )
    graph = {out: [i for i in job.inputs if i in jobs] for out, job in jobs.items()}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise JobError(f"the jobs in pipelines/ depend on each other in a cycle: {err.args[1]}") from err
    return [jobs[out] for out in order]
