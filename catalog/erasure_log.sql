-- erasure_log: what each stedi-etl forget did, person by person. Never holds an email.
-- Grain: one row per person named in a forget.
CREATE TABLE erasure_log (
    erasure_id      STRING    NOT NULL COMMENT 'The forget',
    erased_at       TIMESTAMP NOT NULL COMMENT 'When it was committed',
    customer_key    STRING    NOT NULL COMMENT 'Keyed hash of the normalised email (HMAC-SHA256, hex)',
    matched         BOOLEAN   NOT NULL COMMENT 'Whether any row or line held the person',
    rows_removed    STRING    NOT NULL COMMENT 'Rows removed per table, as a JSON object',
    serial_numbers  INT       NOT NULL COMMENT 'Serial numbers of the person erased and suppressed',
    serials_kept    INT       NOT NULL COMMENT 'Serial numbers also registered to someone else, whose readings were kept',
    files_rewritten INT       NOT NULL COMMENT 'Raw landing files rewritten by this forget (all people named in it)',
    files_deleted   INT       NOT NULL COMMENT 'Unreferenced table and orphan files deleted by this forget'
)
COMMENT 'Erasures done, without the emails erased'
TBLPROPERTIES ('stedi.zone' = 'system', 'stedi.grain' = 'one row per person named in a forget');
