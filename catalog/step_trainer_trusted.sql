-- step_trainer_trusted: step trainer readings of devices owned by customers in customers_curated.
-- Grain: one row per distinct reading (the same reading landed twice is one row).
CREATE TABLE step_trainer_trusted (
    sensorReadingTime  BIGINT NOT NULL COMMENT 'Reading time, epoch milliseconds',
    serialNumber       STRING NOT NULL COMMENT 'Serial number of the device, in its normal form',
    distanceFromObject BIGINT NOT NULL COMMENT 'Distance measured by the motion sensor',
    -- Data quality rules (see accelerometer_trusted.sql)
    CONSTRAINT time_in_ms CHECK (sensorReadingTime BETWEEN 946684800000 AND 4102444800000),
    -- (no serial number rule: every device here is a customers_curated one, whose serial number
    -- passed serial_is_uuid in customer_trusted)
    CONSTRAINT distance_not_negative CHECK (distanceFromObject >= 0)
)
COMMENT 'Step trainer readings of curated customers'
TBLPROPERTIES (
    'stedi.owner' = 'serialNumber',
    'stedi.owner_kind' = 'serial',
    'stedi.taken_at' = 'sensorReadingTime',
    'stedi.zone' = 'trusted',
    'stedi.grain' = 'one row per distinct reading',
    'stedi.rule.time_in_ms' = 'drop',
    'stedi.rule.distance_not_negative' = 'drop',
    'stedi.personal' = 'serialNumber'
);
