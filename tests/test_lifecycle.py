"""The life of consent, as a hypothesis state machine: random sequences of ingest batches (new
customers, updated records giving or withdrawing consent -- in odd forms too --, records that cannot
be read, more readings with the identifiers spelled otherwise), runs, forgets, key rotations and
re-ingests of old files. After every step the audit passes, the tables equal a from-scratch rebuild
of the surviving data, and nobody forgotten is anywhere in the warehouse."""

from __future__ import annotations

import dataclasses
import itertools
import json
import secrets
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from polars.testing import assert_frame_equal

from stedi.audit import audit
from stedi.config import CONSENT_SCOPES, Settings
from stedi.erasure import forget
from stedi.ingest import ingest
from stedi.jobs import load_jobs
from stedi.privacy import normal_form
from stedi.rotation import rotate_key
from stedi.runner import run
from stedi.warehouse import Warehouse
from tests.factories import KEY, T0, customer, reading, step, warehouse_mentions, write_landing
from tests.profiles import examples

OUTPUTS = [job.output for job in load_jobs()]
LINEAGE = ("recorded_at", "source_file", "line_number")  # when and where a record was ingested
TIMES = st.integers(0, 40).map(lambda i: T0 + 1000 * i)
CONSENT = st.one_of(st.none(), TIMES)
#: A withdrawal as senders write it: a missing value, or one that plainly means none.
WITHDRAWN = st.sampled_from([None, "", "null", False, 0])


def spelled(value: str) -> st.SearchStrategy[str]:
    """An email or serial number as another sender may write it: one identifier all the same."""
    return st.sampled_from([value, value.upper(), f"  {value} ", value + "\u200b", "\ufeff" + value.title()])


@dataclass
class Batch:
    """The records of one ingest, as sent; ``trailer`` makes a re-export's bytes new."""

    customers: list[dict] = field(default_factory=list)
    readings: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    trailer: bool = False

    unreadable: list[str] = field(default_factory=list)  # customer lines that cannot be read, as sent

    def write(self, root: Path, name: str, forgotten: set[str] = frozenset()) -> Path | None:
        customers = [c for c in self.customers if normal_form(c["email"]) not in forgotten and normal_form(c["serialNumber"]) not in forgotten]
        readings = [r for r in self.readings if normal_form(r["user"]) not in forgotten]
        steps = [s for s in self.steps if normal_form(s["serialNumber"]) not in forgotten]
        unreadable = [line for line in self.unreadable if not any(f in normal_form(line) for f in forgotten)]
        if not (customers or readings or steps or unreadable):
            return None
        write_landing(root, customers, readings, steps, name=name)
        if unreadable:
            folder = root / "customer" / "landing"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"unreadable-{name}.json").write_text("".join(line + "\n" for line in unreadable))
        if self.trailer:
            for path in root.rglob(f"*-{name}.json"):
                path.write_text(path.read_text() + "\n")
        return root


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="stedi-lifecycle-"))
        self.names = itertools.count()
        self.people: list[dict] = []  # the latest record of each customer ever sent
        self.batches: list[Batch] = []  # every batch ingested, in order (surviving data = these minus the forgotten)
        self.sent: list[Batch] = []  # every batch written, re-ingestable
        self.forgotten: set[str] = set()  # emails and serial numbers of the people forgotten
        self.forgot_last = False
        self.key = KEY

    @initialize(scope=st.sampled_from(CONSENT_SCOPES), data=st.data(), count=st.integers(1, 3))
    def open_warehouse_with_customers(self, scope, data, count):
        self.scope = scope
        self.wh = Warehouse.open(Settings(warehouse=self.tmp / "wh", consent_scope=scope))
        self.new_customers(data, count)

    # -- helpers -----------------------------------------------------------------------------------
    def _ingest_and_run(self, batch: Batch) -> None:
        n = next(self.names)
        src = batch.write(self.tmp / f"b{n}", f"b{n}")
        self.sent.append(batch)
        summary = ingest(self.wh, src, self.key)
        if summary.ingested:
            self.batches.append(batch)
        run(self.wh, self.key)  # raises if its audit finds anything
        self.forgot_last = False

    def _readings(self, data, person, n):
        times = data.draw(st.lists(TIMES, min_size=n, max_size=n, unique=True))
        return (
            [reading(data.draw(spelled(person["email"])), t, x=float(i)) for i, t in enumerate(times)],
            [step(data.draw(spelled(person["serialNumber"])), t, distanceFromObject=i) for i, t in enumerate(times)],
        )

    def _alive(self):
        return [p for p in self.people if normal_form(p["email"]) not in self.forgotten]

    # -- rules -------------------------------------------------------------------------------------
    @rule(data=st.data(), count=st.integers(1, 3))
    def new_customers(self, data, count):
        batch = Batch()
        for _ in range(count):
            i = len(self.people)
            person = customer(f"Person P{i}", serialNumber=str(uuid.uuid4()), lastUpdateDate=T0, shareWithResearchAsOfDate=data.draw(CONSENT))
            self.people.append(person)
            readings, steps = self._readings(data, person, data.draw(st.integers(0, 4)))
            batch.customers.append(person)
            batch.readings += readings
            batch.steps += steps
        self._ingest_and_run(batch)

    @precondition(lambda self: self._alive())
    @rule(data=st.data())
    def change_consent(self, data):
        person = data.draw(st.sampled_from(self._alive()))
        before = person["shareWithResearchAsOfDate"]
        # give; or withdraw (in any form), or move
        changed = TIMES if not isinstance(before, int) or before is False else st.one_of(WITHDRAWN, TIMES.filter(lambda c: c != before))
        consent = data.draw(changed)
        updated = person | {"lastUpdateDate": person["lastUpdateDate"] + 2, "shareWithResearchAsOfDate": consent}
        self.people[self.people.index(person)] = updated
        sent = updated | {"email": data.draw(spelled(person["email"])), "serialNumber": data.draw(spelled(person["serialNumber"]))}
        self._ingest_and_run(Batch(customers=[sent]))

    @precondition(lambda self: self._alive())
    @rule(data=st.data())
    def send_an_update_that_cannot_be_read(self, data):
        """A later record set aside at ingest (a birthday in another format): the customer is kept out
        until a record later still arrives."""
        person = data.draw(st.sampled_from(self._alive()))
        later = person | {"lastUpdateDate": person["lastUpdateDate"] + 1, "birthDay": "31/12/1990"}
        self._ingest_and_run(Batch(unreadable=[json.dumps(later | {"email": data.draw(spelled(person["email"]))})]))

    @precondition(lambda self: self._alive())
    @rule(data=st.data())
    def more_readings(self, data):
        person = data.draw(st.sampled_from(self._alive()))
        readings, steps = self._readings(data, person, data.draw(st.integers(1, 3)))
        self._ingest_and_run(Batch(readings=readings, steps=steps))

    @precondition(lambda self: self._alive())
    @rule(data=st.data())
    def forget_someone(self, data):
        person = data.draw(st.sampled_from(self._alive()))
        email = data.draw(spelled(person["email"]))
        forget(self.wh, self.key, [email])
        self.forgotten |= {normal_form(person["email"]), normal_form(person["serialNumber"])}
        self.forgot_last = True

    @rule()
    def rotate_the_key(self):
        """A deliberate change of key: every table rebuilt under it, every erasure still holding."""
        new = secrets.token_hex(32).encode()
        self.wh.settings = dataclasses.replace(self.wh.settings, pseudonym_key=self.key.decode(), new_pseudonym_key=new.decode())
        rotate_key(self.wh)
        self.key = new
        self.wh.settings = dataclasses.replace(self.wh.settings, pseudonym_key=None, new_pseudonym_key=None)

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), new_bytes=st.booleans())
    def reingest_an_old_batch(self, data, new_bytes):
        old = data.draw(st.sampled_from(self.sent))
        self._ingest_and_run(Batch(old.customers, old.readings, old.steps, trailer=new_bytes or old.trailer, unreadable=old.unreadable))

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def the_audit_passes(self):
        if hasattr(self, "wh"):
            assert audit(self.wh, self.key) == []

    @invariant()
    def tables_equal_a_rebuild_of_the_surviving_data(self):
        if not hasattr(self, "wh"):
            return
        fresh = Warehouse.open(Settings(warehouse=self.tmp / f"rebuild{next(self.names)}", consent_scope=self.scope))
        for i, batch in enumerate(self.batches):
            src = batch.write(self.tmp / f"rebuild-src{next(self.names)}", f"r{i}", self.forgotten)
            if src is not None:
                ingest(fresh, src, self.key)
        run(fresh, self.key)
        for name in OUTPUTS:
            try:
                assert_frame_equal(_canonical(self.wh, name), _canonical(fresh, name), check_row_order=False)
            except AssertionError as err:
                raise AssertionError(f"{name} differs from a rebuild: {err}") from None

    @invariant()
    def nobody_forgotten_is_anywhere(self):
        if self.forgot_last:  # the costly full scan, after each forget
            assert warehouse_mentions(self.wh, self.forgotten) == []


def _canonical(wh: Warehouse, name: str) -> pl.DataFrame:
    frame = wh.scan(name).collect()
    frame = frame.drop([c for c in LINEAGE if c in frame.columns])
    return frame.sort(frame.columns)


Lifecycle.TestCase.settings = settings(
    max_examples=examples(10), stateful_step_count=6, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLifecycle = Lifecycle.TestCase
