"""The stedi jobs, one module each, named by what they do.

Each module holds a pure ``transform`` over narwhals lazy frames, with no I/O, and declares itself
once: ``JOB = job(transform, inputs=(...), output="...")`` (:func:`stedi.jobs.job`): its inputs
(tables, or ``customer_pseudonyms``) and its output (a table with a contract in catalog/). The
runner in ``stedi.runner`` reads the inputs and writes the output. A transform's keyword-only
parameters are run settings (``consent_scope``), passed by the runner and part of the job's
fingerprint. A transform must be local to a customer: its rows for a customer depend only on that
customer's input rows (whose row is whose: ``stedi.owner`` in the contracts). ``appends=`` names
the inputs it maps row by row, if any; a job aggregating an input may instead declare ``folds=``
(that input) and ``fold=``, a function that takes its new rows into the rows before (counts add up)
without reading all of it again. Incremental runs rely on these (``stedi.incremental``), and are
tested equal to full runs.
"""

#: Every job, in the order the original project ran them; the runner orders them by their inputs.
JOBS = (
    "customer_landing_to_trusted",
    "accelerometer_landing_to_trusted",
    "customer_trusted_to_curated",
    "step_trainer_landing_to_trusted",
    "machine_learning_curated",
    "customer_landing_to_consent_history",
)
