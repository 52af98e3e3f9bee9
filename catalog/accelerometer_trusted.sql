-- accelerometer_trusted: accelerometer readings of consenting customers only.
-- Grain: one row per landed reading whose user is in customer_trusted.
CREATE TABLE accelerometer_trusted (
    user      STRING NOT NULL COMMENT 'Email of the owner of the phone, trimmed and lower-cased',
    timestamp BIGINT NOT NULL COMMENT 'Reading time, epoch milliseconds',
    x         DOUBLE NOT NULL COMMENT 'Acceleration on the x axis',
    y         DOUBLE NOT NULL COMMENT 'Acceleration on the y axis',
    z         DOUBLE NOT NULL COMMENT 'Acceleration on the z axis'
)
COMMENT 'Accelerometer readings of consenting customers'
TBLPROPERTIES ('stedi.zone' = 'trusted', 'stedi.grain' = 'one row per reading');
