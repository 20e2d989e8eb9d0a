# Removes member MEMBER from the cluster before its pod goes (run by /bin/sh -ec).
export ETCDCTL_API=3
CLUSTER_ENDPOINT="http://$CLIENT_SERVICE.$NAMESPACE.svc:2379"
PEER_URL="http://$MEMBER.$PEER_SERVICE.$NAMESPACE.svc:2380"
ID=$(etcdctl --endpoints "$CLUSTER_ENDPOINT" member list | grep "$PEER_URL" | cut -d, -f1)
if [ -n "$ID" ]; then etcdctl --endpoints "$CLUSTER_ENDPOINT" member remove "$ID"; fi
