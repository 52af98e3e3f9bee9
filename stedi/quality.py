"""Data quality rules: the ``CHECK`` constraints of each contract, evaluated on a job's output, and
the rows they set aside, kept once in ``quarantine``.

A rule's predicate is SQL (kept in DuckDB's dialect by the contract parser) and DuckDB evaluates all
of a table's rules in one pass over the output, zero-copy from Arrow. Each rule then acts:
``warn`` counts, ``drop`` sets the failing rows aside in quarantine with the rule's name, ``fail``
stops the run before anything is committed. As in SQL, a predicate that is NULL passes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stedi import properties, resources
from stedi.contracts import Contract
from stedi.errors import JobError, first_line
from stedi.warehouse import Change

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from stedi.warehouse import Warehouse


@functools.cache
def _database() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process (opening one costs ~15 ms); each check takes a cursor of it."""
    return resources.connect()


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


def split_invalid(df: pl.DataFrame, c: Contract) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows breaking the contract's NOT NULL columns, set apart with a reason and the row as JSON."""
    import polars as pl

    required = [n for n in c.required if n in df.columns]
    nobody = pl.DataFrame(schema={"reason": pl.String, "raw": pl.String})
    if not required or not any(df[n].null_count() for n in required):  # the usual case, at no cost
        return df, nobody
    reason = pl.concat_str(
        [pl.when(pl.col(n).is_null()).then(pl.lit(f"{n} is null")) for n in required], separator="; ", ignore_nulls=True
    )
    flagged = df.with_columns(_reason=reason)
    bad = flagged.filter(pl.col("_reason") != "")
    good = flagged.filter(pl.col("_reason") == "").drop("_reason")
    return good, bad.select(reason="_reason", raw=pl.struct(df.columns).struct.json_encode())


def quarantine(wh: Warehouse, bad: pl.DataFrame, run_id: str) -> Change | None:
    """Rows a run set aside (``target_table``, ``reason``, ``raw``) as an append to ``quarantine``,
    each kept once: a row the quarantine already holds (an earlier run that computed the same
    table set it aside) is not added again."""
    import polars as pl

    key = ["target_table", "reason", "raw"]
    bad = bad.unique(subset=key, keep="first", maintain_order=True)
    # only the held rows equal to one of these are kept in memory, not every row held (a stream of them)
    held = wh.scan("quarantine").filter(pl.col("target_table").is_in(bad["target_table"].unique().to_list())).select(key)
    held = held.join(bad.lazy().select(key), on=key, how="semi", nulls_equal=True).collect()
    bad = bad.join(held, on=key, how="anti", nulls_equal=True)
    if bad.height == 0:
        return None
    rows = bad.select(
        "target_table",
        "reason",
        "raw",
        source_file=pl.lit(None, pl.String),
        line_number=pl.lit(None, pl.Int64),
        owner=pl.lit(None, pl.String),
        record_time=pl.lit(None, pl.Int64),
        batch_id=pl.lit(run_id),
        quarantined_at=pl.lit(datetime.now(UTC)),
    )
    # (which records set aside it leaves as they were: read when expired history cannot tell)
    stamps = {properties.RUN_ID: run_id, properties.NOT_BY_A_RUN: str(wh.last_snapshot_not_by_a_run("quarantine") or "")}
    return Change("quarantine", rows.to_arrow(), "append", stamps)
