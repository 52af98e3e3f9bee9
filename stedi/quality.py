"""Data quality rules: the ``CHECK`` constraints of each contract, evaluated on a job's output.

A rule's predicate is SQL (kept in DuckDB's dialect by the contract parser) and DuckDB evaluates all
of a table's rules in one pass over the output, zero-copy from Arrow. Each rule then acts:
``warn`` counts, ``drop`` sets the failing rows aside in quarantine with the rule's name, ``fail``
stops the run before anything is committed. As in SQL, a predicate that is NULL passes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stedi.contracts import Contract
from stedi.errors import JobError, first_line

if TYPE_CHECKING:
    import duckdb
    import polars as pl


@functools.cache
def _database() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process (opening one costs ~15 ms); each check takes a cursor of it."""
    import duckdb

    return duckdb.connect()


@dataclass(frozen=True)
class RuleResult:
    rule: str
    action: str
    passed: int
    failed: int

    def as_dict(self) -> dict:
        return {"action": self.action, "passed": self.passed, "failed": self.failed}


def apply_rules(df: pl.DataFrame, c: Contract) -> tuple[pl.DataFrame, pl.DataFrame, list[RuleResult]]:
    """Check ``df`` (an output of table ``c``) against the contract's rules.

    Returns the rows kept, the rows set aside (``reason``, ``raw`` as JSON) and each rule's counts.
    Raises :class:`JobError` if a ``fail`` rule has a failing row.
    """
    import duckdb
    import polars as pl

    nobody = pl.DataFrame(schema={"reason": pl.String, "raw": pl.String})
    if not c.rules:
        return df, nobody, []
    if df.height == 0:
        return df, nobody, [RuleResult(r.name, r.action, 0, 0) for r in c.rules]
    con = _database().cursor()
    try:
        con.register("output", df.to_arrow())
        checks = ", ".join(f'coalesce(({r.predicate}), true) AS "{r.name}"' for r in c.rules)
        flags = pl.from_arrow(con.sql(f"SELECT {checks} FROM output").to_arrow_table())
    except duckdb.Error as err:
        raise JobError(f"{c.name}: a rule of catalog/{c.name}.sql cannot be evaluated: {first_line(err)}") from err
    finally:
        con.close()

    results = []
    for r in c.rules:
        failed = int((~flags[r.name]).sum())
        results.append(RuleResult(r.name, r.action, df.height - failed, failed))
        if failed and r.action == "fail":
            raise JobError(f"{c.name}: rule {r.name} ({r.predicate}) failed for {failed} row(s); nothing was committed")
    dropping = [r for r in c.rules if r.action == "drop"]
    if not any(res.failed for res in results if res.action == "drop"):
        return df, nobody, results
    reason = pl.concat_str(
        [pl.when(~flags[r.name]).then(pl.lit(f"rule {r.name} failed: {r.predicate}")) for r in dropping],
        separator="; ",
        ignore_nulls=True,
    )
    flagged = df.with_columns(_reason=reason)
    bad = flagged.filter(pl.col("_reason") != "")
    good = flagged.filter(pl.col("_reason") == "").drop("_reason")
    return good, bad.select(reason="_reason", raw=pl.struct(df.columns).struct.json_encode()), results
