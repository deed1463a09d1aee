"""The wire contract between the Airflow side and the Ray side. Imports neither Airflow nor Ray.

- :mod:`.spec`: the stage spec a stage operator sends to a job (:class:`StageSpec`, :class:`TableInput`);
- :mod:`.lineage`: the snapshot-summary keys every commit carries;
- :mod:`.run_key`: the rule that names one stage run's output, the same on every try;
- :mod:`.params`: typed per-stage parameters with their defaults (the spec models and the jobs
  both read them from here);
- :mod:`.result`: the channel through which a job reports its result to the task that submitted it.
"""
