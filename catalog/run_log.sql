-- run_log: what every run did, job by job: snapshots read and written, rows, rules, time, outcome.
-- Grain: one row per job of a run (a failed run logs its stale jobs as failed, with the error).
CREATE TABLE run_log (
    run_id             STRING    NOT NULL COMMENT 'The run; every snapshot it wrote carries it as stedi.run-id',
    job                STRING    NOT NULL COMMENT 'Job of pipelines/',
    output_table       STRING    NOT NULL COMMENT 'Table the job writes',
    status             STRING    NOT NULL COMMENT 'updated, unchanged or failed',
    started_at         TIMESTAMP NOT NULL COMMENT 'When the run started',
    seconds            DOUBLE    COMMENT 'Time the job took to compute',
    rows_in            BIGINT    COMMENT 'Rows of the first input',
    rows_out           BIGINT    COMMENT 'Rows written (by an incremental run: rows added)',
    rows_removed       BIGINT    COMMENT 'Rows an incremental run deleted to recompute them (their customer changed)',
    mode               STRING    COMMENT 'full (every row recomputed) or incremental (only the customers new rows touched)',
    rows_quarantined   BIGINT    COMMENT 'Rows set aside: contract breaches and rules with action drop',
    rows_out_of_scope  BIGINT    COMMENT 'Readings kept out by the consent scope',
    rows_unattributable BIGINT   COMMENT 'Readings kept out: their device is registered to several customers',
    rows_uncertain     BIGINT    COMMENT 'Customers kept out: their latest record cannot be read with certainty (see quarantine)',
    rule_results       STRING    COMMENT 'Each rule of the output contract: action, passed, failed (JSON)',
    input_snapshots    STRING    COMMENT 'Snapshot id of each input table read (JSON)',
    output_snapshot_id BIGINT    COMMENT 'Snapshot of the output after the run',
    consent_scope      STRING    COMMENT 'all-history or since-consent',
    error              STRING    COMMENT 'Why the run failed, when it did'
)
COMMENT 'Every run, job by job'
TBLPROPERTIES ('stedi.zone' = 'system', 'stedi.grain' = 'one row per job of a run');
