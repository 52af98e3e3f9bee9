-- step_trainer_trusted: step trainer readings of devices owned by customers in customers_curated.
-- Grain: one row per landed reading.
CREATE TABLE step_trainer_trusted (
    sensorReadingTime  BIGINT NOT NULL COMMENT 'Reading time, epoch milliseconds',
    serialNumber       STRING NOT NULL COMMENT 'Serial number of the device',
    distanceFromObject BIGINT NOT NULL COMMENT 'Distance measured by the motion sensor'
)
COMMENT 'Step trainer readings of curated customers'
TBLPROPERTIES ('stedi.zone' = 'trusted', 'stedi.grain' = 'one row per reading');
