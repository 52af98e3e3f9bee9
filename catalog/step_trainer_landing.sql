-- step_trainer_landing: readings sent by Step Trainer devices, as received.
-- Grain: one row per line of a raw step trainer file.
CREATE TABLE step_trainer_landing (
    sensorReadingTime  BIGINT    NOT NULL COMMENT 'Reading time, epoch milliseconds',
    serialNumber       STRING    NOT NULL COMMENT 'Serial number of the device',
    distanceFromObject BIGINT    NOT NULL COMMENT 'Distance measured by the motion sensor',
    -- what stedi adds: fields beyond the contract, and lineage
    _extra        STRING    COMMENT 'Fields received beyond the contract, as a JSON object; NULL when none',
    _source_file       STRING    NOT NULL COMMENT 'Raw file in the warehouse landing area holding the line',
    _line_number       BIGINT    NOT NULL COMMENT 'Line number in that file, from 1',
    _ingested_at       TIMESTAMP NOT NULL COMMENT 'When the line was ingested'
)
COMMENT 'Step trainer readings as received'
TBLPROPERTIES ('stedi.owner' = 'serialNumber', 'stedi.owner_kind' = 'serial', 'stedi.taken_at' = 'sensorReadingTime', 'stedi.zone' = 'landing', 'stedi.grain' = 'one row per raw line', 'stedi.source' = 'step_trainer', 'stedi.personal' = 'serialNumber,_extra', 'stedi.free_text' = '_extra');
