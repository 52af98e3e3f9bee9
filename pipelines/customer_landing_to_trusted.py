"""customer_landing -> customer_trusted.

Grain: one row per customer, identified by the normalised email.
Keeps: the customer's latest record (greatest ``lastUpdateDate``; ties go to the record ingested
last, then to the later file and line, so the choice is deterministic) -- and only if that record
consents to research. A customer whose latest record withdrew consent is out, even if an older
record consented.
"""

import narwhals as nw

from stedi.privacy import RECORD_ORDER, has_research_consent, normalise_email

INPUTS = ("customer_landing",)
OUTPUT = "customer_trusted"

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


def transform(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    records = customer_landing.with_columns(email=normalise_email("email"))

    latest = records.unique(subset=["email"], keep="last", order_by=list(RECORD_ORDER))

    return latest.filter(has_research_consent()).select(COLUMNS)
