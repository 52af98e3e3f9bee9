-- customer_landing: customer records exactly as the website and the fulfillment system sent them.
-- Grain: one row per line of a raw customer file; a customer may appear several times (updates).
-- Required fields are NOT NULL: a record without them, or with a wrongly typed value, is quarantined.
-- stedi.consents names the consent dates: a value sent that plainly means none ("", "null", false,
-- 0) is read as NULL.
CREATE TABLE customer_landing (
    -- the customer's own fields, as received
    customerName              STRING    COMMENT 'Full name (direct identifier)',
    email                     STRING    NOT NULL COMMENT 'Email as typed (direct identifier; in its normal form, the natural key of the customer)',
    phone                     STRING    COMMENT 'Phone number (direct identifier)',
    birthDay                  DATE      COMMENT 'Date of birth (direct identifier)',
    serialNumber              STRING    NOT NULL COMMENT 'Serial number of the Step Trainer of the customer',
    registrationDate          BIGINT    NOT NULL COMMENT 'Registration time, epoch milliseconds',
    lastUpdateDate            BIGINT    NOT NULL COMMENT 'Time this record was last updated, epoch milliseconds; the latest record wins',
    shareWithResearchAsOfDate BIGINT    COMMENT 'Research consent given at, epoch milliseconds; NULL (or "", "null", false, 0 as sent) = no consent',
    shareWithPublicAsOfDate   BIGINT    COMMENT 'Public sharing consent given at, epoch milliseconds',
    shareWithFriendsAsOfDate  BIGINT    COMMENT 'Friends sharing consent given at, epoch milliseconds',
    -- what stedi adds: fields beyond the contract, and lineage
    _extra        STRING    COMMENT 'Fields received beyond the contract, as a JSON object; NULL when none',
    _source_file              STRING    NOT NULL COMMENT 'Raw file in the warehouse landing area holding the line',
    _line_number              BIGINT    NOT NULL COMMENT 'Line number in that file, from 1',
    _ingested_at              TIMESTAMP NOT NULL COMMENT 'When the line was ingested'
)
COMMENT 'Customer records as received'
TBLPROPERTIES (
    'stedi.owner' = 'email',
    'stedi.owner_kind' = 'email',
    'stedi.zone' = 'landing',
    'stedi.grain' = 'one row per raw line',
    'stedi.source' = 'customer',
    'stedi.consents' = 'shareWithResearchAsOfDate,shareWithPublicAsOfDate,shareWithFriendsAsOfDate',
    'stedi.personal' = 'customerName,email,phone,birthDay,serialNumber,_extra',
    'stedi.free_text' = 'customerName,phone,_extra'
);
