# Airflow 3.3 with this provider installed (no torch, no Ray Train: those run on the Ray cluster).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}
# WITH_SPARK=1: the Spark runtime that ran in our tests, for engine: spark curate stages and for the
# `spark` profile's master and worker (the same image, so driver and executors share Python 3.11
# and this package): Java 17, Spark 3.5.9 and the Iceberg 1.10.2 runtime in /opt/spark-runtime
# (ray_operators/spark/runtime.py), plus hadoop-aws and Iceberg's AWS bundle so Spark reads the
# raw s3a:// files and the S3 warehouse.
ARG WITH_SPARK=0
ARG HADOOP_AWS=3.3.4
ARG AWS_SDK_BUNDLE=1.12.262
ARG ICEBERG=1.10.2
USER root
RUN if [ "$WITH_SPARK" = "1" ]; then \
      apt-get update && \
      apt-get install -y --no-install-recommends openjdk-17-jre-headless libxerial-sqlite-jdbc-java curl && \
      rm -rf /var/lib/apt/lists/* && mkdir -p /opt/spark-runtime && chown airflow:root /opt/spark-runtime; \
    fi
USER airflow
COPY --chown=airflow:root pyproject.toml README.md /opt/ray-lakehouse/
COPY --chown=airflow:root ray_operators /opt/ray-lakehouse/ray_operators
ENV RAY_LAKEHOUSE_SPARK_HOME=/opt/spark-runtime
RUN pip install --no-cache-dir "/opt/ray-lakehouse[spark]" && \
    if [ "$WITH_SPARK" = "1" ]; then \
      python -m ray_operators.spark.runtime install && \
      cd /opt/spark-runtime/pyspark/jars && \
      curl -fsSLO "https://repo1.maven.org/maven2/org/apache/hadoop/hadoop-aws/${HADOOP_AWS}/hadoop-aws-${HADOOP_AWS}.jar" && \
      curl -fsSLO "https://repo1.maven.org/maven2/com/amazonaws/aws-java-sdk-bundle/${AWS_SDK_BUNDLE}/aws-java-sdk-bundle-${AWS_SDK_BUNDLE}.jar" && \
      curl -fsSLO "https://repo1.maven.org/maven2/org/apache/iceberg/iceberg-aws-bundle/${ICEBERG}/iceberg-aws-bundle-${ICEBERG}.jar"; \
    fi
