-- machine_learning_curated: the training set. Each step trainer reading paired with the accelerometer
-- readings taken at the same time by the same customer (the phone's user owns the device's serial).
-- Grain: one row per (step trainer reading, accelerometer reading) pair of one customer.
-- No direct identifier: the customer appears only as customer_key.
CREATE TABLE machine_learning_curated (
    customer_key       STRING NOT NULL COMMENT 'HMAC-SHA256 of the normalised email under the warehouse pseudonym key (hex)',
    timestamp          BIGINT NOT NULL COMMENT 'Reading time shared by both readings, epoch milliseconds',
    distanceFromObject BIGINT NOT NULL COMMENT 'Step trainer distance from object',
    x                  DOUBLE NOT NULL COMMENT 'Acceleration on the x axis',
    y                  DOUBLE NOT NULL COMMENT 'Acceleration on the y axis',
    z                  DOUBLE NOT NULL COMMENT 'Acceleration on the z axis'
)
COMMENT 'Step trainer and accelerometer readings of one customer at one time'
TBLPROPERTIES ('stedi.owner' = 'customer_key', 'stedi.owner_kind' = 'customer_key', 'stedi.taken_at' = 'timestamp', 'stedi.zone' = 'curated', 'stedi.grain' = 'one row per reading pair');
