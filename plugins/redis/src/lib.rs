//! The `redis` plugin: reconciles the Redis Enterprise operator's
//! `app.redislabs.com/v1alpha1` `RedisEnterpriseCluster` into a StatefulSet
//! of `nodes` (image, resources, persistent volumes as the spec says), a
//! headless Service, a UI Service of `uiServiceType`, a
//! PodDisruptionBudget, and a Secret with generated admin credentials for
//! `username`, created once and never regenerated.

mod children;
mod spec;

use children::Cluster;
use spec::Parent;
use trellis_sdk::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use trellis_sdk::prelude::*;

/// The plugin.
pub struct RedisPlugin;

impl Reconciler for RedisPlugin {
    fn info() -> PluginInfo {
        PluginInfo::new("redis", "app.redislabs.com/v1alpha1", "RedisEnterpriseCluster")
            .version(env!("CARGO_PKG_VERSION"))
            .child::<Secret>()
            .child::<Service>()
            .child::<StatefulSet>()
            .child::<PodDisruptionBudget>()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: Parent = req.parent()?;
        let spec = parent.spec.checked().map_err(Error::invalid_spec)?;
        let cluster = Cluster::new(req, &spec);
        let response = Response::new()
            .child_once(&cluster.credentials()?)
            .child(&cluster.nodes_service())
            .child(&cluster.ui_service())
            .child(&cluster.disruption_budget())
            .child(&cluster.stateful_set());

        let observed = req.child::<StatefulSet>(cluster.name());
        let ready = observed
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let state = match &observed {
            None => "PendingCreation",
            Some(_) if ready >= spec.nodes => "Running",
            Some(_) => "Initializing",
        };
        Ok(response
            .status(&spec::Status {
                state: state.to_owned(),
                nodes: spec.nodes,
                ready_nodes: ready,
                credentials_secret: cluster.name().to_owned(),
                ui_service: cluster.ui_service_name(),
            })
            .condition(Condition::ready(
                state == "Running",
                state,
                format!("{ready}/{} nodes ready", spec.nodes),
            )))
    }

    fn validate(req: &AdmissionRequest) -> Result<(), Vec<String>> {
        if req.operation() == Operation::Delete {
            return Ok(());
        }
        let parent: Parent = req.parent()?;
        parent.spec.checked().map(|_| ()).map_err(|e| vec![e])
    }
}

trellis_sdk::export_reconciler!(RedisPlugin);
