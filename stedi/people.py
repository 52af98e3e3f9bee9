"""Whose rows are whose: a set of customers in each form the tables name them by.

An incremental run (:mod:`stedi.incremental`) recomputes the rows of the customers new landing rows
touch; the audit checks theirs. Which column of a table holds a row's owner, and in which form (an
email, a serial number, a pseudonym), the table contracts in ``catalog/`` say (``stedi.owner``,
``stedi.owner_kind``): a table added with an owner column is covered with no change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import narwhals as nw

from stedi import privacy
from stedi.contracts import contract
from stedi.jobs import PSEUDONYMS

if TYPE_CHECKING:
    import polars as pl
    from pyiceberg.expressions import BooleanExpression


@dataclass(frozen=True)
class People:
    """A set of customers, in each form their rows name them by (identifiers in their normal form)."""

    emails: frozenset[str]
    keys: frozenset[str]  # customer_key
    serials: frozenset[str]
    #: every spelling of their emails in customer_landing (as sent: case, spaces), when known
    spellings: frozenset[str] | None = None
    subjects: frozenset[str] = frozenset()  # subject_key (the consent history's pseudonym)

    def __bool__(self) -> bool:
        return bool(self.emails or self.serials)

    def values(self, kind: str) -> list[str]:
        """Their values of an owner kind (``stedi.owner_kind``)."""
        by_kind = {
            "email": self.emails,
            "serial": self.serials,
            "customer_key": self.keys,
            "subject_key": self.subjects,
            "identifier": self.emails | self.serials,
        }
        return sorted(by_kind[kind])

    def restrict(self, frame: Any, table: str) -> pl.LazyFrame:
        """The rows of ``frame`` (Polars, native or narwhals, of table ``table``) that belong to these people."""
        return nw.to_native(frame, pass_through=True).lazy().filter(self._theirs(table))

    def exclude(self, frame: Any, table: str) -> pl.LazyFrame:
        """The rows of ``frame`` (of table ``table``) that belong to anyone else."""
        return nw.to_native(frame, pass_through=True).lazy().filter(~self._theirs(table))

    def _theirs(self, table: str) -> pl.Expr:
        import polars as pl

        if table == PSEUDONYMS:
            return pl.col("email").is_in(self.values("email"))
        if table == privacy.SET_ASIDE:
            return pl.col("owner").is_in(self.values("email"))
        if table == "customer_landing" and self.spellings is not None:  # no need to normalise every row
            return pl.col("email").is_in(sorted(self.spellings))
        c = contract(table)
        column = pl.col(c.owner)
        if c.zone == "landing":  # identifiers as sent; everywhere else in their normal form already
            column = privacy.polars_normal(column)
        return column.is_in(self.values(c.owner_kind))

    def where(self, table: str) -> BooleanExpression:
        """An Iceberg row filter matching these people's rows of ``table`` (not a landing table)."""
        from pyiceberg.expressions import In

        c = contract(table)
        return In(c.owner, self.values(c.owner_kind))

    def __or__(self, other: People) -> People:
        spellings = None if self.spellings is None or other.spellings is None else self.spellings | other.spellings
        return People(
            self.emails | other.emails,
            self.keys | other.keys,
            self.serials | other.serials,
            spellings,
            self.subjects | other.subjects,
        )


NOBODY = People(frozenset(), frozenset(), frozenset(), frozenset())
