"""customer_landing -> customer_trusted.

Grain: one row per customer, identified by the normalised email.
Keeps: the customer's latest record (greatest ``lastUpdateDate``; ties go to the record ingested
last, then to the later file and line, so the choice is deterministic) -- and only if that record
consents to research. A customer whose latest record withdrew consent is out, even if an older
record consented.
"""

import narwhals as nw

from stedi.privacy import has_research_consent, latest_records

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
    latest = latest_records(customer_landing)

    return latest.filter(has_research_consent()).select(COLUMNS)
