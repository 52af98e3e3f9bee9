-- customers_curated: consenting customers with at least one accelerometer reading, pseudonymised.
-- Grain: one row per customer (customer_key). No direct identifier: no email, name, phone or birthday.
CREATE TABLE customers_curated (
    customer_key              STRING NOT NULL COMMENT 'HMAC-SHA256 of the normalised email under the warehouse pseudonym key (hex)',
    serialNumber              STRING NOT NULL COMMENT 'Serial number of the Step Trainer of the customer',
    registrationDate          BIGINT NOT NULL COMMENT 'Registration time, epoch milliseconds',
    lastUpdateDate            BIGINT NOT NULL COMMENT 'Time of the record kept, epoch milliseconds',
    shareWithResearchAsOfDate BIGINT NOT NULL COMMENT 'Research consent given at, epoch milliseconds',
    shareWithPublicAsOfDate   BIGINT COMMENT 'Public sharing consent given at, epoch milliseconds',
    shareWithFriendsAsOfDate  BIGINT COMMENT 'Friends sharing consent given at, epoch milliseconds',
    accelerometer_readings    BIGINT NOT NULL COMMENT 'Number of trusted accelerometer readings',
    first_reading_at          BIGINT NOT NULL COMMENT 'First trusted accelerometer reading, epoch milliseconds',
    last_reading_at           BIGINT NOT NULL COMMENT 'Last trusted accelerometer reading, epoch milliseconds'
)
COMMENT 'Consenting customers with accelerometer data, pseudonymised'
TBLPROPERTIES ('stedi.owner' = 'customer_key', 'stedi.zone' = 'curated', 'stedi.grain' = 'one row per customer');
