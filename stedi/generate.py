"""A deterministic synthetic STEDI data set in the starter layout, with the starter data's traits.

* about half the customers consent to research (``shareWithResearchAsOfDate`` set);
* each customer owns one Step Trainer, which sends 30 readings;
* most customers (95 %) use the phone app, which sends 3 accelerometer readings at each of the
  device's reading times;
* reading times fall on a shared clock, so many timestamps are shared by several customers;
* some customers (8 %) have a later, updated record -- half of those give or withdraw consent.

The same ``customers`` and ``seed`` always give the same bytes. The data set is made a block of
customers at a time and written as it is made (files of at most ``ROWS_PER_FILE`` rows), so memory
stays bounded whatever ``customers`` is: a million customers need no more than ten thousand. A set
that fits one block is drawn from the generator seeded with ``seed`` alone; block ``b`` after it
from ``(seed, b)``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

T0 = 1_655_560_000_000  # epoch ms; the starter data's day
READINGS_PER_DEVICE = 30
ACCEL_PER_READING = 3
PHONE_SHARE = 0.95
CONSENT_SHARE = 0.5
UPDATE_SHARE = 0.08
ROWS_PER_FILE = 250_000
BLOCK = 10_000  # customers made at once

_FIRST = [
    "Santosh",
    "Ben",
    "Frank",
    "Edward",
    "Sarah",
    "Jerry",
    "Anna",
    "Chris",
    "Lyn",
    "Neeru",
    "Mikey",
    "Ashley",
    "Craig",
    "Spencer",
    "Bobby",
    "Trevor",
    "Jeanie",
    "Rick",
    "Kathy",
    "Alexander",
    "Liz",
    "Steph",
    "Danny",
    "Gail",
    "Eric",
    "Larry",
    "John",
    "Jacky",
    "David",
    "Senthil",
    "Dan",
    "Suresh",
    "Lisa",
]
_LAST = [
    "Clayton",
    "Khatib",
    "Hansen",
    "Doshi",
    "Lincoln",
    "Stark",
    "Mitra",
    "Jones",
    "Staples",
    "Wu",
    "Anandh",
    "Olson",
    "Gonzales",
    "Hansen",
    "Davis",
    "Aristotle",
    "Mendoza",
    "Howard",
    "Lewis",
    "Army",
    "Huey",
    "Gonzalez",
    "Ahmed",
    "Abram",
    "Taylor",
    "Habschied",
    "Kim",
    "Pavlov",
    "Thomas",
]


@dataclass(frozen=True)
class Generated:
    customers: int
    customer_records: int
    accelerometer_readings: int
    step_trainer_readings: int
    files: int


def generate(customers: int, seed: int, out: Path) -> Generated:
    """Write the data set into ``out`` (customer/landing, accelerometer/landing, step_trainer/landing)."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    window = max(600 * customers, 60_000)  # ms; about 5 % of reading times are shared by two devices
    writers = {
        "customers": _Files(out / "customer" / "landing", "customer", T0 + 1),
        "updates": _Files(out / "customer" / "landing", "customer", T0 + 2),
        "accelerometer": _Files(out / "accelerometer" / "landing", "accelerometer", T0 + 10),
        "step_trainer": _Files(out / "step_trainer" / "landing", "step_trainer", T0 + 10),
    }
    blocks = range(0, customers, BLOCK)
    for b, first in enumerate(blocks):
        rng = np.random.default_rng(seed if len(blocks) == 1 else [seed, b])
        for name, frame in _block(rng, first, min(BLOCK, customers - first), window).items():
            writers[name].add(frame)
    for w in writers.values():
        w.close()
    return Generated(
        customers,
        writers["customers"].rows + writers["updates"].rows,
        writers["accelerometer"].rows,
        writers["step_trainer"].rows,
        sum(w.files for w in writers.values()),
    )


def _block(rng: np.random.Generator, first_index: int, n: int, window: int) -> dict[str, pl.DataFrame]:
    """The records and readings of ``n`` customers, numbered from ``first_index``."""
    idx = np.arange(n)
    first = np.array(_FIRST)[rng.integers(0, len(_FIRST), n)]
    last = np.array(_LAST)[rng.integers(0, len(_LAST), n)]
    names = np.char.add(np.char.add(first, " "), last)
    emails = [f"{f}.{l}{first_index + i}@example.com" for i, (f, l) in enumerate(zip(first, last, strict=True))]
    serials = [str(uuid.UUID(bytes=bytes(b), version=4)) for b in rng.integers(0, 256, (n, 16), dtype=np.uint8)]
    registered = T0 + rng.integers(0, window // 2, n)
    consent = rng.random(n) < CONSENT_SHARE

    def maybe(mask: np.ndarray, values: np.ndarray) -> list[int | None]:
        return [int(v) if m else None for v, m in zip(values, mask, strict=True)]

    birthdays = np.datetime64("1930-01-01") + rng.integers(0, 75 * 365, n).astype("timedelta64[D]")
    phones = [f"801555{p:04d}" for p in rng.integers(0, 10_000, n)]
    customers_df = pl.DataFrame(
        {
            "customerName": names.tolist(),
            "email": emails,
            "phone": phones,
            "birthDay": [str(d) for d in birthdays],
            "serialNumber": serials,
            "registrationDate": registered,
            "lastUpdateDate": registered,
            "shareWithResearchAsOfDate": maybe(consent, registered),
            "shareWithPublicAsOfDate": maybe(rng.random(n) < 0.5, registered),
            "shareWithFriendsAsOfDate": maybe(rng.random(n) < 0.5, registered),
        }
    )

    # later, updated records: half change consent (give or withdraw), half only the phone
    updated = np.flatnonzero(rng.random(n) < UPDATE_SHARE)
    later = registered[updated] + rng.integers(1_000, window, updated.size)
    flips = rng.random(updated.size) < 0.5
    new_consent = np.where(flips, ~consent[updated], consent[updated])
    updates_df = customers_df[updated.tolist()].with_columns(
        pl.Series("phone", [f"801556{p:04d}" for p in rng.integers(0, 10_000, updated.size)]),
        pl.Series("lastUpdateDate", later),
        pl.Series("shareWithResearchAsOfDate", maybe(new_consent, later), dtype=pl.Int64),
    )

    # step trainer: 30 strictly increasing reading times per device on a shared millisecond clock
    draws = np.sort(rng.integers(0, window, (n, READINGS_PER_DEVICE)), axis=1) + np.arange(READINGS_PER_DEVICE)
    times = (registered[:, None] + draws).ravel()
    owner = np.repeat(idx, READINGS_PER_DEVICE)
    step_df = pl.DataFrame(
        {
            "sensorReadingTime": times,
            "serialNumber": pl.Series(serials)[owner.tolist()] if n else [],
            "distanceFromObject": rng.integers(200, 301, times.size),
        }
    )

    # accelerometer: 3 readings per device reading time, for customers with the phone app
    has_phone = rng.random(n) < PHONE_SHARE
    with_phone = np.flatnonzero(has_phone[owner])
    acc_owner = np.repeat(owner[with_phone], ACCEL_PER_READING)
    acc_times = np.repeat(times[with_phone], ACCEL_PER_READING)
    axis = np.array([-1.0, 0.0, 1.0])
    accel_df = pl.DataFrame(
        {
            "user": pl.Series(emails)[acc_owner.tolist()],
            "timestamp": acc_times,
            "x": axis[rng.integers(0, 3, acc_times.size)],
            "y": axis[rng.integers(0, 3, acc_times.size)],
            "z": axis[rng.integers(0, 3, acc_times.size)],
        }
    )
    return {"customers": customers_df, "updates": updates_df, "accelerometer": _shuffle_users(accel_df, rng), "step_trainer": step_df}


def _shuffle_users(df: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Interleave phones as a server receiving them would, keeping each phone's readings together."""
    if df.height == 0:
        return df
    order = pl.DataFrame({"user": df["user"].unique(maintain_order=True)})
    order = order.with_columns(pl.Series("rank", rng.permutation(order.height)))
    return df.join(order, on="user", maintain_order="left").sort("rank", maintain_order=True).drop("rank")


class _Files:
    """One source's landing files, written as rows come: ``ROWS_PER_FILE`` rows each, the last fewer;
    file ``i`` is ``{stem}-{first_id + 100 i}.json``."""

    def __init__(self, folder: Path, stem: str, first_id: int) -> None:
        self.folder, self.stem, self.first_id = folder, stem, first_id
        self.pending: list[pl.DataFrame] = []
        self.buffered = self.rows = self.files = 0

    def add(self, frame: pl.DataFrame) -> None:
        if frame.height:
            self.pending.append(frame)
            self.buffered += frame.height
            self.rows += frame.height
        while self.buffered >= ROWS_PER_FILE:
            self._flush(ROWS_PER_FILE)

    def close(self) -> None:
        if self.buffered:
            self._flush(self.buffered)

    def _flush(self, rows: int) -> None:
        frame = pl.concat(self.pending, rechunk=False)
        self.folder.mkdir(parents=True, exist_ok=True)
        frame.slice(0, rows).write_ndjson(self.folder / f"{self.stem}-{self.first_id + self.files * 100}.json")
        rest = frame.slice(rows)
        self.pending, self.buffered = ([rest] if rest.height else []), rest.height
        self.files += 1
