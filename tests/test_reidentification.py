"""Nothing in a curated table links back to a person: joined to every table of every other zone on
each column they share, no curated row finds exactly one partner -- the join that re-identified
every customer of customers_curated through its serial number and registration instant finds
nothing now. The readings' own columns (when each was taken, what it measured) are the training
data: they are left out of the joins, and the zones' access rules keep the other zones from
analysts (README, Privacy)."""

from __future__ import annotations

import polars as pl

from stedi import privacy
from stedi.contracts import load_contracts
from stedi.generate import generate
from tests.factories import KEY, loaded_warehouse


def _reading_columns() -> set[str]:
    """Columns of the tables of readings: when a reading was taken and what it measured."""
    readings = [c for c in load_contracts().values() if c.taken_at is not None and c.zone == "landing"]
    return {col.name for c in readings for col in c.raw_columns if col.name != c.owner}


def _tables(wh) -> dict[str, pl.DataFrame]:
    return {name: wh.scan(name).collect() for name in load_contracts()}


def unique_matches(tables: dict[str, pl.DataFrame]) -> list[str]:
    """Every (curated column, other table) join where some curated row has exactly one partner."""
    contracts = load_contracts()
    readings = _reading_columns()
    found = []
    for name, frame in tables.items():
        if contracts[name].zone != "curated":
            continue
        curated = frame.with_row_index("_row")
        for other, rows in tables.items():
            if contracts[other].zone == "curated":
                continue
            for column in sorted(set(frame.columns) & set(rows.columns) - readings):
                partners = curated.select("_row", column).join(rows.select(column), on=column, how="inner")
                single = partners.group_by("_row").len().filter(pl.col("len") == 1).height
                if single:
                    found.append(f"{name}.{column} -> {other}: {single} row(s)")
    return found


def test_no_curated_row_joins_to_one_row_of_another_zone(tmp_path):
    generate(120, seed=13, out=tmp_path / "src")
    tables = _tables(loaded_warehouse(tmp_path / "wh", tmp_path / "src"))
    assert tables["customers_curated"].height > 50 and tables["machine_learning_curated"].height > 1000
    assert unique_matches(tables) == []


def test_the_check_finds_the_columns_that_linked_back(tmp_path):
    """customers_curated as it was -- with the serial number and the registration instant -- links
    every customer back; so would the consent history keyed by the curated pseudonym."""
    generate(30, seed=13, out=tmp_path / "src")
    tables = _tables(loaded_warehouse(tmp_path / "wh", tmp_path / "src"))
    trusted = tables["customer_trusted"].with_columns(
        customer_key=pl.col("email").map_elements(lambda e: privacy.customer_key(e, KEY), return_dtype=pl.String)
    )
    as_it_was = tables["customers_curated"].join(trusted.select("customer_key", "serialNumber", "registrationDate"), on="customer_key")
    found = unique_matches(tables | {"customers_curated": as_it_was})
    assert any(m.startswith("customers_curated.serialNumber -> customer_landing") for m in found), found
    assert any(m.startswith("customers_curated.registrationDate -> customer_landing") for m in found), found
    history = tables["customer_consent_history"].rename({"subject_key": "customer_key"})
    assert unique_matches(tables | {"customer_consent_history": history}) == []  # keyed apart: nothing
    relinked = history.with_columns(customer_key=pl.lit(tables["customers_curated"]["customer_key"][0]))
    assert unique_matches(tables | {"customer_consent_history": relinked[:1]})


def test_no_curated_row_of_the_starter_data_joins_back(tmp_path, starter):
    assert unique_matches(_tables(loaded_warehouse(tmp_path / "wh", starter))) == []
