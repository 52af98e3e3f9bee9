"""Where the transforms run: lazy Polars in this process (the default), or PySpark. Frames passed
between jobs are the engine's native lazy frames; the transforms see them through narwhals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import narwhals as nw

if TYPE_CHECKING:
    import polars as pl

    from stedi.warehouse import Warehouse


class Engine(Protocol):
    """Where the transforms run. Frames passed between jobs are the engine's native lazy frames."""

    incremental: bool  # whether runs on it may be incremental

    def outputs(self, wh: Warehouse) -> Any:
        """How a run on it checks and stages its outputs (:mod:`stedi.outputs`)."""

    def materialize(self, frame: nw.LazyFrame) -> Any:
        """Compute a job's output; return a native lazy frame over the result for downstream jobs."""

    def from_polars(self, frame: pl.DataFrame) -> Any:
        """A native lazy frame over a small Polars frame (the pseudonym map)."""

    def to_polars(self, native: Any) -> pl.DataFrame:
        """Collect a native lazy frame into Polars."""


class PolarsEngine:
    """The default: lazy Polars, collected with the streaming engine."""

    incremental = True  # an incremental run recomputes only the people it touches (stedi.incremental)

    def outputs(self, wh: Warehouse) -> Any:
        """How a run on this engine checks and stages its outputs (:mod:`stedi.outputs`)."""
        from stedi.outputs import PolarsOutputs

        return PolarsOutputs(wh)

    def materialize(self, frame: nw.LazyFrame) -> pl.LazyFrame:
        return frame.to_native().collect(engine="streaming").lazy()

    def from_polars(self, frame: pl.DataFrame) -> pl.LazyFrame:
        return frame.lazy()

    def to_polars(self, native: pl.LazyFrame) -> pl.DataFrame:
        return native.collect()


class SparkEngine:
    """PySpark: outputs stay lazy, so Spark plans the whole chain of jobs at once."""

    incremental = False  # every table rebuilt

    def outputs(self, wh: Warehouse) -> Any:
        from stedi.errors import ConfigError

        raise ConfigError("this Spark engine evaluates transforms only: a run on Spark needs stedi.spark.SparkTables")

    def __init__(self, spark: Any):
        self.spark = spark

    def materialize(self, frame: nw.LazyFrame) -> Any:
        return frame.to_native()

    def from_polars(self, frame: pl.DataFrame) -> Any:
        return self.spark.createDataFrame(frame.to_arrow())

    def to_polars(self, native: Any) -> pl.DataFrame:
        return nw.from_native(native).collect(backend="polars").to_native()
