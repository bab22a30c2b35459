#!/usr/bin/env bash
# Edge start-up: check the settings, wait for HDFS to leave safe mode, create the HDFS directories and the
# Kafka topics, install the cron schedules, then run cron in the foreground. Every step is idempotent, so a
# restarted edge simply goes through them again.
set -euo pipefail

# The paths are overridable only so tests/test_cluster_static.py can run this script outside a container.
ready_file="${EDGE_READY_FILE:-/run/cronlake-edge.ready}"
topics_file="${EDGE_TOPICS_FILE:-/etc/cronlake/kafka-topics.txt}"
cron_file="${EDGE_CRON_FILE:-/etc/cron.d/cronlake}"
settings_file="${EDGE_SETTINGS_FILE:-/etc/cronlake/settings.env}"
kit_dir="${EDGE_KIT_DIR:-/opt/cronlake}"
job_user="${HADOOP_USER_NAME:?HADOOP_USER_NAME must name the HDFS user the jobs run as}"

log() { printf '%s edge: %s\n' "$(date -Iseconds)" "$*"; }
as_hdfs_superuser() { HADOOP_USER_NAME=hadoop "$@"; }

rm -f "${ready_file}"
# Run the kit from its checkout, so `python -m` finds crontab/schedules.yaml beside it.
cd "${kit_dir}"

log "effective settings (exits 2 on a bad one):"
python -m cronlake.core.settings
mkdir -p "${CRONLAKE_STATE_DIR}"

# A restarted NameNode stays read-only (safe mode) until the DataNodes have reported their blocks.
log "waiting for HDFS to leave safe mode"
until as_hdfs_superuser hdfs dfsadmin -safemode wait; do
  log "NameNode not answering yet, retrying in 5 s"
  sleep 5
done

log "creating ${CRONLAKE_LAKE_ROOT}, /user/${job_user}, /spark-logs and /tmp on HDFS"
as_hdfs_superuser hdfs dfs -mkdir -p "${CRONLAKE_LAKE_ROOT}" "/user/${job_user}" /spark-logs /tmp
as_hdfs_superuser hdfs dfs -chown "${job_user}" "${CRONLAKE_LAKE_ROOT}" "/user/${job_user}"
as_hdfs_superuser hdfs dfs -chmod 1777 /spark-logs /tmp

while read -r topic partitions; do
  [[ -z "${topic}" || "${topic}" == \#* ]] && continue
  log "Kafka topic ${topic} (${partitions} partitions)"
  kafka-topics.sh --bootstrap-server "${CRONLAKE_KAFKA_BOOTSTRAP}" --create --if-not-exists \
    --topic "${topic}" --partitions "${partitions}" --replication-factor 1
done <"${topics_file}"

# cron passes no environment to its jobs. Each line the installer writes sets PATH, JAVA_HOME and
# CRONLAKE_ENV_FILE, so the settings go to that file; what Spark and Hadoop need goes at the top of the
# cron file, where the installer keeps lines it did not write.
umask 077
mkdir -p "$(dirname "${settings_file}")"
for name in $(compgen -e | grep '^CRONLAKE_' | grep -vx CRONLAKE_ENV_FILE); do
  printf '%s=%s\n' "${name}" "${!name}"
done >"${settings_file}"
umask 022
{
  echo "# Written by cluster/edge/entrypoint.sh at every start; cronlake.ops.schedules adds the jobs below."
  for name in HADOOP_HOME HADOOP_CONF_DIR HADOOP_USER_NAME SPARK_CONF_DIR PYSPARK_PYTHON PYSPARK_DRIVER_PYTHON TZ; do
    printf '%s=%s\n' "${name}" "${!name:?${name} must be set in the edge image or service}"
  done
} >"${cron_file}"

log "installing the cron schedules into ${cron_file}"
python -m cronlake.ops.schedules install --cron-file "${cron_file}" --settings-file "${settings_file}"
# cron ignores files in /etc/cron.d that are group- or world-writable.
chmod 0644 "${cron_file}"

touch "${ready_file}"
log "ready; running cron in the foreground"
exec cron -f
