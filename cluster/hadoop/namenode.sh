#!/usr/bin/env bash
# Runs the NameNode, formatting its metadata directory only on the very first start.
#
# Reformatting an existing NameNode gives HDFS a new namespace: every file is lost and the DataNodes refuse
# to join ("Incompatible clusterIDs"). So the format happens only when no VERSION file exists, never with
# -force, and -nonInteractive makes it abort rather than wipe a directory that holds anything else.
set -euo pipefail

name_dir="$(hdfs getconf -confKey dfs.namenode.name.dir)"
name_dir="${name_dir#file://}"

if [[ -f "${name_dir}/current/VERSION" ]]; then
  echo "namenode: ${name_dir} is already formatted; starting it as it is"
else
  echo "namenode: first start, formatting ${name_dir} with cluster id ${HDFS_CLUSTER_ID}"
  hdfs namenode -format -nonInteractive -clusterid "${HDFS_CLUSTER_ID}"
fi

exec hdfs namenode
