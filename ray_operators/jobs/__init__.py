"""Ray-side job code. Runs on the Ray cluster: never imports Airflow."""
