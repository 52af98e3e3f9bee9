-- quarantine: input set aside, with the reason, so that nothing received is silently lost.
-- Grain: one row per rejected line (at ingest) or rejected output row (in a job).
CREATE TABLE quarantine (
    target_table STRING    NOT NULL COMMENT 'Table the row was meant for',
    reason       STRING    NOT NULL COMMENT 'Why it was set aside',
    raw          STRING    COMMENT 'The raw line (ingest) or the row as JSON (job)',
    source_file  STRING    COMMENT 'Raw file in the warehouse landing area, when from ingest',
    line_number  BIGINT    COMMENT 'Line number in that file, from 1',
    owner        STRING    COMMENT 'Whose line it is, when that can be read: the normal form of its email (or serial number), or of the one email it mentions',
    record_time  BIGINT    COMMENT 'A customer record: the latest time (epoch ms) any of its timestamps says, when one can be read',
    batch_id     STRING    NOT NULL COMMENT 'Ingest batch or run that set it aside',
    quarantined_at TIMESTAMP NOT NULL COMMENT 'When it was set aside'
)
COMMENT 'Rows set aside with their reason'
TBLPROPERTIES ('stedi.owner' = 'owner', 'stedi.owner_kind' = 'identifier', 'stedi.zone' = 'system', 'stedi.grain' = 'one row per rejected line or row', 'stedi.personal' = 'reason,raw,owner', 'stedi.free_text' = 'reason,raw');
