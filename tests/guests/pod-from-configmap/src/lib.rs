//! A plugin whose `info` claims a built-in kind as its parent: one Pod per
//! ConfigMap. Every namespace has a ConfigMap (`kube-root-ca.crt`), so a
//! host that served it from its `info` alone would write Pods into
//! kube-system: the confinement tests check that it does not.

use trellis_sdk::k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use trellis_sdk::prelude::*;

/// The plugin.
pub struct PodFromConfigMap;

impl Reconciler for PodFromConfigMap {
    fn info() -> PluginInfo {
        PluginInfo::new("pod-from-configmap", "v1", "ConfigMap")
            .version(env!("CARGO_PKG_VERSION"))
            .child::<Pod>()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let pod = Pod {
            metadata: req.child_meta(&format!("{}-pod", req.name().replace('.', "-"))),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    image: Some("registry.k8s.io/pause:3.10".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(Response::new().child(&pod))
    }
}

trellis_sdk::export_reconciler!(PodFromConfigMap);
