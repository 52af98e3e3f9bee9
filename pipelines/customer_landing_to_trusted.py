"""customer_landing + customer_records_set_aside -> customer_trusted.

Grain: one row per customer, identified by the normal form of the email.
Keeps: the customer's latest record (greatest ``lastUpdateDate``; ties go by arrival: ingest batch,
then file, then line) -- and only if that record consents to research (a consent date in the
2000..2100 window). A customer whose latest record withdrew consent is out, even if an older record
consented. Fails closed: a customer whose latest record cannot be read with certainty -- a later
record of theirs was set aside at ingest, or the consent value is not a valid date -- is out too
(marked, so the run counts them and sets them aside in quarantine).
"""

import narwhals as nw

from stedi.jobs import job
from stedi.privacy import CERTAIN, has_research_consent, latest_records, mark_certain

COLUMNS = (
    "customerName",
    "email",
    "phone",
    "birthDay",
    "serialNumber",
    "registrationDate",
    "lastUpdateDate",
    "shareWithResearchAsOfDate",
    "shareWithPublicAsOfDate",
    "shareWithFriendsAsOfDate",
)


def transform(customer_landing: nw.LazyFrame, customer_records_set_aside: nw.LazyFrame) -> nw.LazyFrame:
    latest = mark_certain(latest_records(customer_landing), customer_records_set_aside)

    # the uncertain stay in, marked, so that the runner counts them, sets them aside and drops them
    return latest.filter(has_research_consent() | ~nw.col(CERTAIN)).select(*COLUMNS, CERTAIN)


JOB = job(
    transform,
    inputs=("customer_landing", "customer_records_set_aside"),
    output="customer_trusted",
)
