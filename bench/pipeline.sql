-- The five derived tables in plain SQL, for the DuckDB and PySpark baselines of bench/run.py.
-- Same meaning as pipelines/: latest record per normalised email, research consent set, the
-- machine learning join on (customer, timestamp), a reading landed twice kept once. {landing}
-- views are created by the caller.
CREATE OR REPLACE TEMP VIEW customer_trusted AS
SELECT * FROM (
    SELECT *, lower(trim(email)) AS customer,
           row_number() OVER (PARTITION BY lower(trim(email)) ORDER BY lastUpdateDate DESC) AS rn
    FROM customer_landing
) WHERE rn = 1 AND shareWithResearchAsOfDate IS NOT NULL;

CREATE OR REPLACE TEMP VIEW accelerometer_trusted AS
SELECT DISTINCT lower(trim(a.user)) AS user, a.timestamp, a.x, a.y, a.z FROM accelerometer_landing a
WHERE lower(trim(a.user)) IN (SELECT customer FROM customer_trusted);

CREATE OR REPLACE TEMP VIEW customers_curated AS
SELECT c.customer, c.serialNumber, c.registrationDate, c.lastUpdateDate, c.shareWithResearchAsOfDate
FROM customer_trusted c
WHERE c.customer IN (SELECT lower(trim(user)) FROM accelerometer_trusted);

CREATE OR REPLACE TEMP VIEW step_trainer_trusted AS
SELECT DISTINCT s.sensorReadingTime, s.serialNumber, s.distanceFromObject FROM step_trainer_landing s
WHERE s.serialNumber IN (SELECT serialNumber FROM customers_curated);

CREATE OR REPLACE TEMP VIEW machine_learning_curated AS
SELECT sha2(c.customer, 256) AS customer_key, s.sensorReadingTime AS timestamp, s.distanceFromObject, a.x, a.y, a.z
FROM step_trainer_trusted s
JOIN customers_curated c ON c.serialNumber = s.serialNumber
JOIN accelerometer_trusted a ON lower(trim(a.user)) = c.customer AND a.timestamp = s.sensorReadingTime;
