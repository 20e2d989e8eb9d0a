//! The `etcd-cluster` plugin: reconciles etcd-operator's
//! `etcd.database.coreos.com/v1beta2` `EtcdCluster` (`size`, `version`) into
//! a StatefulSet of etcd members with peer and client Services, a
//! PodDisruptionBudget keeping quorum and the ConfigMap members bootstrap
//! from. Size changes move one member per step (see [`members`]); version
//! changes roll one pod at a time. Status mirrors etcd-operator's: `phase`,
//! `size`, `currentVersion`, `targetVersion`, `readyMembers`, `serviceName`,
//! `clientPort`.

mod children;
mod members;
mod spec;

use children::Cluster;
use members::Observed;
use spec::EtcdCluster;
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
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: EtcdCluster = req.parent()?;
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
        let mut status = json!({
                "phase": plan.phase,
                "size": observed.replicas,
                "readyMembers": observed.ready,
                "currentVersion": current,
                "targetVersion": spec.version,
                "serviceName": cluster.client_service_name(),
                "clientPort": 2379,
        });
        if !spec.warnings.is_empty() {
            status["warnings"] = json!(spec.warnings);
        }
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

    fn validate(obj: &Value, _old: Option<&Value>) -> Result<(), Vec<String>> {
        let parent: EtcdCluster = serde_json::from_value(obj.clone()).map_err(|e| vec![e.to_string()])?;
        parent.spec.checked().map(|_| ()).map_err(|e| vec![e])
    }
}

trellis_sdk::export_reconciler!(EtcdClusterPlugin);
