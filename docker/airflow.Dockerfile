# Airflow 3.3 with this provider installed (no torch, no Ray Train: those run on the Ray cluster).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}
# The Spark profile's SparkSubmitOperator needs spark-submit here: build with --build-arg WITH_SPARK=1.
ARG WITH_SPARK=0
USER root
RUN if [ "$WITH_SPARK" = "1" ]; then \
      apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless && \
      rm -rf /var/lib/apt/lists/*; \
    fi
USER airflow
COPY --chown=airflow:root pyproject.toml README.md /opt/ray-lakehouse/
COPY --chown=airflow:root ray_operators /opt/ray-lakehouse/ray_operators
RUN pip install --no-cache-dir "/opt/ray-lakehouse[spark]" && \
    if [ "$WITH_SPARK" = "1" ]; then pip install --no-cache-dir "pyspark==3.5.5"; fi
