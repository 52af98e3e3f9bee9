"""A deterministic synthetic STEDI data set in the starter layout, with the starter data's traits.

* about half the customers consent to research (``shareWithResearchAsOfDate`` set);
* each customer owns one Step Trainer, which sends 30 readings;
* most customers (95 %) use the phone app, which sends 3 accelerometer readings at each of the
  device's reading times;
* reading times fall on a shared clock, so many timestamps are shared by several customers;
* some customers (8 %) have a later, updated record -- half of those give or withdraw consent.

The same ``customers`` and ``seed`` always give the same bytes.
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
    rng = np.random.default_rng(seed)
    n = customers
    idx = np.arange(n)

    first = np.array(_FIRST)[rng.integers(0, len(_FIRST), n)]
    last = np.array(_LAST)[rng.integers(0, len(_LAST), n)]
    names = np.char.add(np.char.add(first, " "), last)
    emails = [f"{f}.{l}{i}@example.com" for i, (f, l) in enumerate(zip(first, last, strict=True))]
    serials = [str(uuid.UUID(bytes=bytes(b), version=4)) for b in rng.integers(0, 256, (n, 16), dtype=np.uint8)]
    window = max(600 * n, 60_000)  # ms; about 5 % of reading times are shared by two devices
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

    files = 0
    files += _write(customers_df, out / "customer" / "landing", "customer", T0 + 1)
    files += _write(updates_df, out / "customer" / "landing", "customer", T0 + 2)
    files += _write(_shuffle_users(accel_df, rng), out / "accelerometer" / "landing", "accelerometer", T0 + 10)
    files += _write(step_df, out / "step_trainer" / "landing", "step_trainer", T0 + 10)
    return Generated(n, customers_df.height + updates_df.height, accel_df.height, step_df.height, files)


def _shuffle_users(df: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Interleave phones as a server receiving them would, keeping each phone's readings together."""
    if df.height == 0:
        return df
    order = pl.DataFrame({"user": df["user"].unique(maintain_order=True)})
    order = order.with_columns(pl.Series("rank", rng.permutation(order.height)))
    return df.join(order, on="user", maintain_order="left").sort("rank", maintain_order=True).drop("rank")


def _write(df: pl.DataFrame, folder: Path, stem: str, first_id: int) -> int:
    if df.height == 0:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    chunks = max(1, -(-df.height // ROWS_PER_FILE))
    size = -(-df.height // chunks)
    for i in range(chunks):
        df.slice(i * size, size).write_ndjson(folder / f"{stem}-{first_id + i * 100}.json")
    return chunks
