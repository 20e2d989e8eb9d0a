# Starts one etcd member of a StatefulSet (run by /bin/sh -ec).
# Environment: POD_NAME, NAMESPACE, CLUSTER, PEER_SERVICE, CLIENT_SERVICE;
# /etc/etcd-cluster/size holds the cluster's size.
export ETCDCTL_API=3
DATA=/var/run/etcd
DOMAIN="$PEER_SERVICE.$NAMESPACE.svc"
PEER_URL="http://$POD_NAME.$DOMAIN:2380"
CLUSTER_ENDPOINT="http://$CLIENT_SERVICE.$NAMESPACE.svc:2379"
run() {
  exec etcd --name "$POD_NAME" --data-dir "$DATA" \
    --listen-peer-urls http://0.0.0.0:2380 --listen-client-urls http://0.0.0.0:2379 \
    --advertise-client-urls "http://$POD_NAME.$DOMAIN:2379" \
    --initial-advertise-peer-urls "$PEER_URL" "$@"
}
# A member that kept its data restarts as it was.
if [ -d "$DATA/member" ]; then run; fi
# A running cluster answers: join it, replacing a stale entry of this name.
if etcdctl --endpoints "$CLUSTER_ENDPOINT" member list > /tmp/members 2>/dev/null; then
  STALE=$(grep "$PEER_URL" /tmp/members | cut -d, -f1)
  if [ -n "$STALE" ]; then etcdctl --endpoints "$CLUSTER_ENDPOINT" member remove "$STALE"; fi
  etcdctl --endpoints "$CLUSTER_ENDPOINT" member add "$POD_NAME" --peer-urls "$PEER_URL" | grep '^ETCD_' > /tmp/join
  . /tmp/join
  run --initial-cluster "$ETCD_INITIAL_CLUSTER" --initial-cluster-state existing
fi
# Nobody answers: bootstrap the first members together.
SIZE=$(cat /etc/etcd-cluster/size)
PEERS=""
i=0
while [ "$i" -lt "$SIZE" ]; do
  PEERS="$PEERS${PEERS:+,}$CLUSTER-$i=http://$CLUSTER-$i.$DOMAIN:2380"
  i=$((i + 1))
done
run --initial-cluster "$PEERS" --initial-cluster-state new --initial-cluster-token "$CLUSTER-$NAMESPACE"
