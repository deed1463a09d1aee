"""Local stacks for the demo, the tests and the benchmarks: never imported by the provider.

The provider (hooks, operators, sensors, triggers, pipelines and jobs) runs against whatever Ray
cluster, catalog and Airflow database its connections name. This subpackage starts such services
on one machine, on free loopback ports, and stops them by pid:

- :mod:`.ray_cluster`: a token-auth Ray head (and worker nodes);
- :mod:`.standalone`: ``airflow standalone`` with its scheduler, triggerer and dag-processor;
- :mod:`.postgres`: a throwaway PostgreSQL for Airflow's metadata;
- :mod:`.demo`, :mod:`.airflow_local`: ``make demo`` and ``make airflow``;
- :mod:`.demo_data`: generated raw data.
"""
