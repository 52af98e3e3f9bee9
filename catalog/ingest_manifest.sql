-- ingest_manifest: every raw file ingested into the landing area.
-- Grain: one row per distinct file content as received (sha256); the same bytes under another name
-- are skipped. A stored copy may later differ from what was received: lines of erased people are
-- blanked (forget, or suppressed at ingest), and stored_sha256 says what the copy holds now.
CREATE TABLE ingest_manifest (
    sha256           STRING    NOT NULL COMMENT 'SHA-256 of the bytes of the file as received (hex)',
    file_name        STRING    NOT NULL COMMENT 'Name of the file as received; (erased) once forget erased a person it was named after',
    stored_path      STRING    NOT NULL COMMENT 'Copy in the warehouse landing area, relative to the warehouse, named by batch and file number (no part of the name received)',
    source           STRING    NOT NULL COMMENT 'customer, accelerometer or step_trainer',
    size_bytes       BIGINT    NOT NULL COMMENT 'Size of the file in bytes, as received',
    rows_landed      BIGINT    NOT NULL COMMENT 'Lines landed in the landing table',
    rows_quarantined BIGINT    NOT NULL COMMENT 'Lines set aside in quarantine',
    batch_id         STRING    NOT NULL COMMENT 'Ingest batch',
    ingested_at      TIMESTAMP NOT NULL COMMENT 'When the file was ingested',
    stored_sha256    STRING    COMMENT 'SHA-256 of the stored copy when it differs from the file received',
    stored_size      BIGINT    COMMENT 'Size of the stored copy when it differs from the file received',
    rows_erased      BIGINT    COMMENT 'Lines blanked in the stored copy: erased or suppressed people',
    rewritten_at     TIMESTAMP COMMENT 'When the stored copy was last rewritten'
)
COMMENT 'Raw files ingested'
TBLPROPERTIES ('stedi.zone' = 'system', 'stedi.grain' = 'one row per file content', 'stedi.personal' = 'file_name', 'stedi.free_text' = 'file_name');
