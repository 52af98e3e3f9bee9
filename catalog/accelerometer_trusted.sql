-- accelerometer_trusted: accelerometer readings of consenting customers only.
-- Grain: one row per distinct reading (the same reading landed twice is one row) whose user is in
-- customer_trusted.
CREATE TABLE accelerometer_trusted (
    user      STRING NOT NULL COMMENT 'Email of the owner of the phone, in its normal form',
    timestamp BIGINT NOT NULL COMMENT 'Reading time, epoch milliseconds',
    x         DOUBLE NOT NULL COMMENT 'Acceleration on the x axis',
    y         DOUBLE NOT NULL COMMENT 'Acceleration on the y axis',
    z         DOUBLE NOT NULL COMMENT 'Acceleration on the z axis',
    -- Data quality rules: a row breaking one goes to quarantine (drop), is only counted (warn) or
    -- fails the run (fail), as TBLPROPERTIES say; every run logs each rule's counts in run_log.
    CONSTRAINT timestamp_in_ms CHECK (timestamp BETWEEN 946684800000 AND 4102444800000),
    CONSTRAINT xyz_finite CHECK (abs(x) < 1000000 AND abs(y) < 1000000 AND abs(z) < 1000000)
)
COMMENT 'Accelerometer readings of consenting customers'
TBLPROPERTIES (
    'stedi.owner' = 'user',
    'stedi.owner_kind' = 'email',
    'stedi.taken_at' = 'timestamp',
    'stedi.zone' = 'trusted',
    'stedi.grain' = 'one row per distinct reading',
    'stedi.rule.timestamp_in_ms' = 'drop',
    'stedi.rule.xyz_finite' = 'drop',
    'stedi.personal' = 'user'
);
