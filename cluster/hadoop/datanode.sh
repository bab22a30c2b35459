#!/usr/bin/env bash
# Runs a DataNode in the first free slot directory of the data volume.
#
# All replicas of `docker compose up -d --scale datanode=N` mount the same named volume; each one takes
# an exclusive lock on a slot (held by the DataNode process itself until it exits) and keeps its blocks
# in that slot, so replicas never share a storage directory and a restarted replica finds its blocks again.
set -euo pipefail

data_root="${DATANODE_DATA_ROOT:-/data/datanode}"
max_slots="${DATANODE_MAX_SLOTS:-16}"
# Advertise the container's IP: WebHDFS redirects clients to it, and it resolves on any Docker network.
address="$(hostname -i | awk '{print $1}')"

mkdir -p "${data_root}"
for slot in $(seq 1 "${max_slots}"); do
  exec {lock_fd}>"${data_root}/slot-${slot}.lock"
  if flock --nonblock "${lock_fd}"; then
    echo "datanode: using ${data_root}/slot-${slot}, advertised as ${address}"
    exec hdfs datanode \
      -D "dfs.datanode.data.dir=file://${data_root}/slot-${slot}" \
      -D "dfs.datanode.hostname=${address}"
  fi
  exec {lock_fd}>&-
done

echo "datanode: all ${max_slots} slots of ${data_root} are taken; raise DATANODE_MAX_SLOTS" >&2
exit 1
