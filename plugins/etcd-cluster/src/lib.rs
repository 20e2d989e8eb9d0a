//! The `etcd-cluster` plugin: reconciles etcd-operator's
//! `etcd.database.coreos.com/v1beta2` `EtcdCluster` (`size`, `version`) into
//! a StatefulSet of etcd members with peer and client Services, a
//! PodDisruptionBudget keeping quorum and the ConfigMap members bootstrap
//! from. Size changes move one member per step (see [`members`]); version
//! changes roll one pod at a time. Status mirrors etcd-operator's: `phase`,
//! `size`, `currentVersion`, `targetVersion`, `readyMembers`, `serviceName`,
//! `clientPort`.
//!
//! Admission: `validate` refuses a spec that reconcile would refuse, and an
//! update moving `spec.size` by more than one member while the stored
//! status does not report every member ready (`readyMembers == size`, see
//! `ObservedStatus::healthy` in `spec`).

mod children;
mod members;
mod spec;

use children::Cluster;
use members::Observed;
use spec::Parent;
use trellis_sdk::k8s_openapi::api::batch::v1::Job;
use trellis_sdk::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use trellis_sdk::prelude::*;

/// The plugin.
pub struct EtcdClusterPlugin;

impl Reconciler for EtcdClusterPlugin {
    fn info() -> PluginInfo {
        PluginInfo::new("etcd-cluster", "etcd.database.coreos.com/v1beta2", "EtcdCluster")
            .version(env!("CARGO_PKG_VERSION"))
            .child::<StatefulSet>()
            .child::<Service>()
            .child::<ConfigMap>()
            .child::<PodDisruptionBudget>()
            .child::<Job>()
            .validating()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: Parent = req.parent()?;
        let spec = parent.spec.checked().map_err(Error::invalid_spec)?;
        let cluster = Cluster::new(req, &spec);
        let known = parent.status.as_ref().and_then(|s| s.current_version.as_deref());
        let observed = req.child::<StatefulSet>(cluster.name()).map(|s| Observed::of(&s));
        let removal_done = |ordinal| {
            req.child::<Job>(&cluster.removal_job_name(ordinal))
                .is_some_and(|job| members::succeeded(&job))
        };
        let plan = members::plan(&spec, observed.as_ref(), known, removal_done);

        let mut response = Response::new()
            .child(&cluster.peer_service())
            .child(&cluster.client_service())
            .child(&cluster.config())
            .child(&cluster.disruption_budget())
            .child(&cluster.stateful_set(plan.replicas));
        if let Some(ordinal) = plan.remove_member {
            response.push_child(&cluster.removal_job(ordinal));
        }
        for warning in &spec.warnings {
            response = response.warning("EvenSize", warning.clone());
        }

        let observed = observed.unwrap_or_default();
        let current = observed.current_version(known);
        let running = plan.phase == "Running";
        let status = spec::Status {
            phase: plan.phase.to_owned(),
            size: observed.replicas,
            ready_members: observed.ready,
            current_version: current.clone(),
            target_version: spec.version.clone(),
            service_name: cluster.client_service_name(),
            client_port: 2379,
            warnings: spec.warnings.clone(),
        };
        Ok(response.status(&status).condition(Condition::ready(
            running,
            plan.phase,
            format!(
                "{}/{} members ready at {}",
                observed.ready,
                spec.size,
                current.as_deref().unwrap_or("no version yet")
            ),
        )))
    }

    fn validate(req: &AdmissionRequest) -> Result<(), Vec<String>> {
        if req.operation() == Operation::Delete {
            return Ok(());
        }
        let parent: Parent = req.parent()?;
        let spec = parent.spec.checked().map_err(|e| vec![e])?;
        // A stored object that no longer parses is no reason to refuse its
        // repair: the size check needs both sizes.
        let old = req.old::<Parent>().ok().flatten();
        match old.and_then(|old| spec::size_change_problem(&old, &spec)) {
            Some(problem) => Err(vec![problem]),
            None => Ok(()),
        }
    }
}

trellis_sdk::export_reconciler!(EtcdClusterPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(size: i32, status: Option<Value>) -> Value {
        let mut obj = json!({
            "apiVersion": "etcd.database.coreos.com/v1beta2", "kind": "EtcdCluster",
            "metadata": {"name": "etcd", "namespace": "db"},
            "spec": {"size": size, "version": "3.5.17"},
        });
        if let Some(status) = status {
            obj["status"] = status;
        }
        obj
    }

    fn status(size: i32, ready: i32) -> Option<Value> {
        Some(json!({"phase": "Running", "size": size, "readyMembers": ready, "currentVersion": "3.5.17"}))
    }

    fn update(old: Value, new: Value) -> Result<(), Vec<String>> {
        EtcdClusterPlugin::validate(&AdmissionRequest::for_test(Operation::Update, Some(new), Some(old)))
    }

    #[test]
    fn crd_is_generated_from_the_types() {
        use kube::CustomResourceExt;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/crds/etcd.database.coreos.com_etcdclusters.yaml"
        );
        trellis_sdk::crd::assert_current(&spec::EtcdCluster::crd(), path);
    }

    #[test]
    fn a_healthy_cluster_may_change_size_by_any_amount() {
        assert_eq!(update(cluster(3, status(3, 3)), cluster(7, None)), Ok(()));
        assert_eq!(update(cluster(5, status(5, 5)), cluster(1, None)), Ok(()));
    }

    #[test]
    fn an_unhealthy_cluster_changes_size_one_member_at_a_time() {
        assert_eq!(update(cluster(3, status(3, 2)), cluster(4, None)), Ok(()));
        assert_eq!(update(cluster(3, status(3, 2)), cluster(2, None)), Ok(()));
        assert_eq!(
            update(cluster(3, status(3, 2)), cluster(5, None)),
            Err(vec![
                "spec.size may change by one member at a time while the cluster is not healthy (3 → 5; 2/3 members ready)"
                    .to_owned()
            ])
        );
        assert_eq!(
            update(cluster(3, None), cluster(1, None)),
            Err(vec![
                "spec.size may change by one member at a time while the cluster is not healthy (3 → 1; no status yet)"
                    .to_owned()
            ])
        );
        // A StatefulSet with no members yet is not healthy either.
        assert!(update(cluster(3, status(0, 0)), cluster(5, None)).is_err());
    }

    #[test]
    fn other_updates_creates_and_deletes_are_checked_as_reconcile_does() {
        let mut new_version = cluster(3, None);
        new_version["spec"]["version"] = json!("3.5.18");
        assert_eq!(update(cluster(3, status(3, 1)), new_version), Ok(()));
        let create = |obj| EtcdClusterPlugin::validate(&AdmissionRequest::for_test(Operation::Create, Some(obj), None));
        assert_eq!(create(cluster(3, None)), Ok(()));
        assert_eq!(
            create(cluster(0, None)),
            Err(vec!["size must be at least 1, not 0".to_owned()])
        );
        let delete = AdmissionRequest::for_test(Operation::Delete, None, Some(cluster(3, status(3, 0))));
        assert_eq!(EtcdClusterPlugin::validate(&delete), Ok(()));
    }
}
