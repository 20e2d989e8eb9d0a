//! The `msdeploy` plugin: reconciles `custom.ops/v1` `MicroServiceDeploy`
//! into the workload of one micro-service instance: ServiceAccount,
//! ConfigMap (from `config`), Deployment, Service, ResourceQuota (from
//! `resourceRequirements`, only in a namespace dedicated to the instance:
//! see [`quota`]) and, with `autoscaling`, a HorizontalPodAutoscaler.
//! `idle: true` scales the instance to zero.

mod children;
pub mod quota;
mod spec;

use children::Names;
use spec::Parent;
use trellis_sdk::k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use trellis_sdk::k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use trellis_sdk::prelude::*;

/// The plugin.
pub struct MsDeploy;

impl Reconciler for MsDeploy {
    fn info() -> PluginInfo {
        PluginInfo::new("msdeploy", "custom.ops/v1", "MicroServiceDeploy")
            .version(env!("CARGO_PKG_VERSION"))
            .child::<ServiceAccount>()
            .child::<ConfigMap>()
            .child::<Deployment>()
            .child::<Service>()
            .child::<ResourceQuota>()
            .child::<HorizontalPodAutoscaler>()
            .related::<Namespace>()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: Parent = req.parent()?;
        let spec = parent.spec.checked().map_err(Error::invalid_spec)?;
        let names = Names::new(req, &spec);

        let mut response = Response::new()
            .child(&children::service_account(req, &names))
            .child(&children::deployment(req, &names, &spec))
            .child(&children::service(req, &names, &spec));
        if let Some(config) = &spec.config {
            response.push_child(&children::config_map(req, &names, config));
        }
        if spec.resources.is_some() {
            let scope = quota::Scope::of(req, &names.instance);
            if scope == quota::Scope::Dedicated
                && let Some(quota) = children::resource_quota(req, &names, &spec)
            {
                response.push_child(&quota);
            }
            response = response.condition(scope.condition(req, &names.instance));
        }
        if spec.autoscaling && !spec.idle {
            response.push_child(&children::autoscaler(req, &names, &spec));
        }
        Ok(status(req, &names, &spec, response))
    }

    fn validate(req: &AdmissionRequest) -> Result<(), Vec<String>> {
        if req.operation() == Operation::Delete {
            return Ok(());
        }
        let parent: Parent = req.parent()?;
        parent.spec.checked().map(|_| ()).map_err(|e| vec![e])
    }
}

/// Status from the observed Deployment: replicas, readiness and phase.
fn status(req: &Request, names: &Names, spec: &spec::Checked, response: Response) -> Response {
    let observed = req.child::<Deployment>(&names.instance).and_then(|d| d.status);
    let ready = observed.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let available = observed.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
    let current = observed.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let wanted = spec.wanted_replicas();
    let (phase, is_ready, reason, message) = if spec.idle {
        let drained = current == 0;
        (
            "Idle",
            drained,
            if drained { "Idle" } else { "ScalingDown" },
            format!("idle: {current} replicas left"),
        )
    } else if ready >= wanted.max(1) {
        (
            "Running",
            true,
            "ReplicasReady",
            format!("{ready}/{wanted} replicas ready"),
        )
    } else {
        (
            "Progressing",
            false,
            "ReplicasNotReady",
            format!("{ready}/{wanted} replicas ready"),
        )
    };
    response
        .status(&spec::Status {
            phase: phase.to_owned(),
            replicas: current,
            ready_replicas: ready,
            available_replicas: available,
            service: format!("{}.{}.svc", names.instance, req.namespace()),
        })
        .condition(Condition::ready(is_ready, reason, message))
}

trellis_sdk::export_reconciler!(MsDeploy);
