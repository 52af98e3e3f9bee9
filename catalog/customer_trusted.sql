-- customer_trusted: customers who consented to research, each as of their latest record.
-- Grain: one row per customer (normalised email); the record with the greatest lastUpdateDate wins.
CREATE TABLE customer_trusted (
    customerName              STRING COMMENT 'Full name (direct identifier)',
    email                     STRING NOT NULL COMMENT 'Email, trimmed and lower-cased: the key of the customer',
    phone                     STRING COMMENT 'Phone number (direct identifier)',
    birthDay                  DATE   COMMENT 'Date of birth (direct identifier)',
    serialNumber              STRING NOT NULL COMMENT 'Serial number of the Step Trainer of the customer',
    registrationDate          BIGINT NOT NULL COMMENT 'Registration time, epoch milliseconds',
    lastUpdateDate            BIGINT NOT NULL COMMENT 'Time of the record kept, epoch milliseconds',
    shareWithResearchAsOfDate BIGINT NOT NULL COMMENT 'Research consent given at, epoch milliseconds',
    shareWithPublicAsOfDate   BIGINT COMMENT 'Public sharing consent given at, epoch milliseconds',
    shareWithFriendsAsOfDate  BIGINT COMMENT 'Friends sharing consent given at, epoch milliseconds'
)
COMMENT 'Consenting customers, latest record each'
TBLPROPERTIES ('stedi.zone' = 'trusted', 'stedi.grain' = 'one row per customer');
