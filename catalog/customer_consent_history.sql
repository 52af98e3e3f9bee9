-- customer_consent_history: every version of every customer research consent (SCD type 2).
-- Grain: one row per customer (subject_key) and consent version; a version starts with each record
-- whose shareWithResearchAsOfDate differs from the previous record of that customer.
-- Pseudonymous: no email, name, phone or birthday. Holds non-consenting customers too, by design:
-- it is the record of who may appear in the other tables, and since when.
CREATE TABLE customer_consent_history (
    subject_key               STRING    NOT NULL COMMENT 'Pseudonym of the customer in this table: HMAC-SHA256 of the normalised email under the pseudonym key, keyed apart from customer_key so that no curated row joins to it',
    version                   INT       NOT NULL COMMENT 'Version of the consent of the customer, from 1',
    consenting                BOOLEAN   NOT NULL COMMENT 'Whether research consent holds in this version',
    change                    STRING    NOT NULL COMMENT 'not given, given, moved or withdrawn',
    shareWithResearchAsOfDate BIGINT    COMMENT 'Research consent given at, epoch milliseconds; NULL when not given',
    valid_from                BIGINT    NOT NULL COMMENT 'lastUpdateDate of the record starting this version, epoch milliseconds',
    valid_to                  BIGINT    COMMENT 'valid_from of the next version; NULL for the current one',
    is_current                BOOLEAN   NOT NULL COMMENT 'Whether this is the latest version of the customer',
    recorded_at               TIMESTAMP NOT NULL COMMENT 'When the record starting this version was ingested',
    source_file               STRING    NOT NULL COMMENT 'Raw file of that record, relative to the warehouse',
    line_number               BIGINT    NOT NULL COMMENT 'Line of that record in the raw file, from 1'
)
COMMENT 'Research consent of every customer over time, pseudonymised'
TBLPROPERTIES ('stedi.owner' = 'subject_key', 'stedi.owner_kind' = 'subject_key', 'stedi.holds' = 'every customer', 'stedi.zone' = 'trusted', 'stedi.grain' = 'one row per customer and consent version');
