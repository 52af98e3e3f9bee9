-- accelerometer_landing: readings sent by the mobile app, as received.
-- Grain: one row per line of a raw accelerometer file.
CREATE TABLE accelerometer_landing (
    user          STRING    NOT NULL COMMENT 'Email of the owner of the phone (direct identifier)',
    timestamp     BIGINT    NOT NULL COMMENT 'Reading time, epoch milliseconds',
    x             DOUBLE    NOT NULL COMMENT 'Acceleration on the x axis',
    y             DOUBLE    NOT NULL COMMENT 'Acceleration on the y axis',
    z             DOUBLE    NOT NULL COMMENT 'Acceleration on the z axis',
    -- what stedi adds: fields beyond the contract, and lineage
    _extra        STRING    COMMENT 'Fields received beyond the contract, as a JSON object; NULL when none',
    _source_file  STRING    NOT NULL COMMENT 'Raw file in the warehouse landing area holding the line',
    _line_number  BIGINT    NOT NULL COMMENT 'Line number in that file, from 1',
    _ingested_at  TIMESTAMP NOT NULL COMMENT 'When the line was ingested'
)
COMMENT 'Accelerometer readings as received'
TBLPROPERTIES ('stedi.owner' = 'user', 'stedi.owner_kind' = 'email', 'stedi.taken_at' = 'timestamp', 'stedi.zone' = 'landing', 'stedi.grain' = 'one row per raw line', 'stedi.source' = 'accelerometer', 'stedi.personal' = 'user,_extra', 'stedi.free_text' = '_extra');
