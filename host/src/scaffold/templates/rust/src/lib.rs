//! The __KIND__ plugin (__GROUP__/__VERSION__), in Rust.
//!
//! Each __KIND__ gets a ConfigMap holding its message, repeated `replicas`
//! times; its status says what was written. `make test` checks that
//! crd.yaml is what [`__KIND__Spec`] and [`__KIND__Status`] generate (kube's
//! `CustomResource` derive, in tests only), then runs the scenarios of
//! tests/ through the built module. `make crd` rewrites crd.yaml.

use serde::{Deserialize, Serialize};
use trellis_sdk::prelude::*;

/// What a __KIND__ asks for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    test,
    kube(group = "__GROUP__", version = "__VERSION__", kind = "__KIND__", namespaced, status = "__KIND__Status"),
    kube(crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"))
)]
pub struct __KIND__Spec {
    /// The message the ConfigMap holds.
    #[cfg_attr(test, schemars(required, length(min = 1)))]
    pub message: Option<String>,
    /// How often.
    #[serde(default = "one")]
    #[cfg_attr(test, schemars(range(min = 1, max = 10)))]
    pub replicas: i64,
}

fn one() -> i64 {
    1
}

/// What the plugin last wrote.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
pub struct __KIND__Status {
    pub message: String,
}

#[derive(Deserialize)]
struct Parent {
    spec: __KIND__Spec,
}

/// The plugin.
pub struct Plugin;

impl Reconciler for Plugin {
    fn info() -> PluginInfo {
        PluginInfo::new("__NAME__", "__GROUP__/__VERSION__", "__KIND__").child::<ConfigMap>()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let Parent { spec } = req.parent()?;
        let Some(message) = spec.message.filter(|m| !m.is_empty()) else {
            return Err(Error::invalid_spec("spec.message is required"));
        };
        let replicas = spec.replicas;
        if !(1..=10).contains(&replicas) {
            return Err(Error::invalid_spec("spec.replicas must be an integer from 1 to 10"));
        }
        let message = vec![message.as_str(); replicas as usize].join(" ");
        let config_map = ConfigMap {
            metadata: req.child_meta_labeled(req.name(), &req.app_labels("__NAME__", "message")),
            data: Some([("message".to_owned(), message.clone())].into()),
            ..Default::default()
        };
        Ok(Response::new()
            .child(&config_map)
            .status(&__KIND__Status { message })
            .condition(Condition::ready(
                true,
                "Configured",
                format!("ConfigMap {} holds the message", req.name()),
            )))
    }
}

trellis_sdk::export_reconciler!(Plugin);

#[cfg(test)]
mod crd {
    use kube::CustomResourceExt;

    #[test]
    fn crd_yaml_is_generated_from_the_types() {
        trellis_sdk::crd::assert_current(&super::__KIND__::crd(), concat!(env!("CARGO_MANIFEST_DIR"), "/crd.yaml"));
    }
}
