//! The __KIND__ plugin (__GROUP__/__VERSION__), in Rust.
//!
//! Each __KIND__ gets a ConfigMap holding its message, repeated `replicas`
//! times; its status says what was written. `make test` runs the scenarios
//! of tests/ through the built module. crd.yaml is the schema of
//! [`__KIND__Spec`]: keep the two in step.

use serde::{Deserialize, Serialize};
use trellis_sdk::prelude::*;

/// What a __KIND__ asks for.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct __KIND__Spec {
    /// The message the ConfigMap holds.
    pub message: String,
    /// How often (1 to 10, default 1).
    pub replicas: Option<i64>,
}

/// What the plugin last wrote.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct __KIND__Status {
    pub message: String,
}

#[derive(Deserialize)]
struct Parent {
    #[serde(default)]
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
        if spec.message.is_empty() {
            return Err(Error::invalid_spec("spec.message is required"));
        }
        let replicas = spec.replicas.unwrap_or(1);
        if !(1..=10).contains(&replicas) {
            return Err(Error::invalid_spec("spec.replicas must be an integer from 1 to 10"));
        }
        let message = vec![spec.message.as_str(); replicas as usize].join(" ");
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
