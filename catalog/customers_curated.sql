-- customers_curated: consenting customers with at least one accelerometer reading, pseudonymised.
-- Grain: one row per customer (customer_key). Nothing here joins back to a person's record in
-- another zone: no direct identifier, no serial number, no instant to the millisecond.
CREATE TABLE customers_curated (
    customer_key           STRING NOT NULL COMMENT 'HMAC-SHA256 of the normalised email under the warehouse pseudonym key (hex); found in no other zone',
    accelerometer_readings BIGINT NOT NULL COMMENT 'Number of trusted accelerometer readings',
    first_reading_day      DATE   NOT NULL COMMENT 'Day (UTC) of the first trusted accelerometer reading',
    last_reading_day       DATE   NOT NULL COMMENT 'Day (UTC) of the last trusted accelerometer reading'
)
COMMENT 'Consenting customers with accelerometer data, pseudonymised'
TBLPROPERTIES ('stedi.owner' = 'customer_key', 'stedi.owner_kind' = 'customer_key', 'stedi.zone' = 'curated', 'stedi.grain' = 'one row per customer');
