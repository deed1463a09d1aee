# A Ray node with the stage jobs' runtime dependencies. The job code itself (ray_operators.jobs)
# is shipped by the operators with runtime_env py_modules (RAY_LAKEHOUSE_SHIP_PACKAGE=true), so
# the cluster needs no Airflow. For GPU workers: --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311
FROM ${RAY_IMAGE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir "pyiceberg[sql-sqlite,pyarrow,s3fs]==0.12.0" "pandas" && \
    pip install --no-cache-dir "torch==2.13.0" --index-url "${TORCH_INDEX}"
