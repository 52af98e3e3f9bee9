-- customer_trusted: customers who consented to research, each as of their latest record.
-- Grain: one row per customer (normalised email); the record with the greatest lastUpdateDate wins,
-- ties going by arrival. A customer whose latest record cannot be read with certainty is not here.
CREATE TABLE customer_trusted (
    customerName              STRING COMMENT 'Full name (direct identifier)',
    email                     STRING NOT NULL COMMENT 'Email in its normal form (stedi.privacy.normal_form): the key of the customer',
    phone                     STRING COMMENT 'Phone number (direct identifier)',
    birthDay                  DATE   COMMENT 'Date of birth (direct identifier)',
    serialNumber              STRING NOT NULL COMMENT 'Serial number of the Step Trainer of the customer, in its normal form',
    registrationDate          BIGINT NOT NULL COMMENT 'Registration time, epoch milliseconds',
    lastUpdateDate            BIGINT NOT NULL COMMENT 'Time of the record kept, epoch milliseconds',
    shareWithResearchAsOfDate BIGINT NOT NULL COMMENT 'Research consent given at, epoch milliseconds',
    shareWithPublicAsOfDate   BIGINT COMMENT 'Public sharing consent given at, epoch milliseconds',
    shareWithFriendsAsOfDate  BIGINT COMMENT 'Friends sharing consent given at, epoch milliseconds',
    -- Data quality rules (see accelerometer_trusted.sql)
    CONSTRAINT email_shaped CHECK (email RLIKE '^[^@ ]+@[^@ ]+[.][^@ ]+$'),
    CONSTRAINT serial_is_uuid CHECK (serialNumber RLIKE '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'),
    CONSTRAINT birthday_not_in_future CHECK (birthDay <= current_date()),
    CONSTRAINT consent_in_ms CHECK (shareWithResearchAsOfDate BETWEEN 946684800000 AND 4102444800000)
)
COMMENT 'Consenting customers, latest record each'
TBLPROPERTIES (
    'stedi.owner' = 'email',
    'stedi.owner_kind' = 'email',
    'stedi.zone' = 'trusted',
    'stedi.grain' = 'one row per customer',
    'stedi.rule.email_shaped' = 'drop',
    'stedi.rule.serial_is_uuid' = 'drop',
    'stedi.rule.birthday_not_in_future' = 'drop',
    -- the consent window itself (stedi.privacy.consent_window): a record outside it is not consent
    'stedi.rule.consent_in_ms' = 'fail',
    'stedi.personal' = 'customerName,email,phone,birthDay,serialNumber',
    'stedi.free_text' = 'customerName,phone'
);
