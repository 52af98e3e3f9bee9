-- suppression_list: people erased with stedi-etl forget, who must not come back.
-- Grain: one row per erased email or Step Trainer serial number, as a keyed hash only.
-- Ingest skips (and counts) every line whose email or serial number hashes to a row here.
CREATE TABLE suppression_list (
    kind          STRING    NOT NULL COMMENT 'email or serialNumber',
    key_hash      STRING    NOT NULL COMMENT 'HMAC-SHA256 (hex) of the normal form under the warehouse suppression key (its first pseudonym key: see stedi.keys)',
    suppressed_at TIMESTAMP NOT NULL COMMENT 'When it was added',
    erasure_id    STRING    NOT NULL COMMENT 'The forget that added it'
)
COMMENT 'Keyed hashes of erased emails and serial numbers'
TBLPROPERTIES ('stedi.zone' = 'system', 'stedi.grain' = 'one row per erased email or serial number');
