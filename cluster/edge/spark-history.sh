#!/usr/bin/env bash
# Runs the Spark history server on the event logs the edge's drivers write to HDFS (spark.eventLog.dir).
set -euo pipefail

log_dir="${SPARK_HISTORY_LOG_DIR:-hdfs://namenode:8020/spark-logs}"

until hdfs dfsadmin -safemode wait; do
  echo "spark-history: HDFS not answering yet, retrying in 5 s"
  sleep 5
done
# Drivers write here as the job user: world-writable with the sticky bit, like /tmp.
hdfs dfs -mkdir -p "${log_dir}"
hdfs dfs -chmod 1777 "${log_dir}"

SPARK_HOME="$(python3.11 -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME
export SPARK_HISTORY_OPTS="-Dspark.history.fs.logDirectory=${log_dir} -Dspark.history.ui.port=18080 ${SPARK_HISTORY_OPTS:-}"
exec "${SPARK_HOME}/bin/spark-class" org.apache.spark.deploy.history.HistoryServer
