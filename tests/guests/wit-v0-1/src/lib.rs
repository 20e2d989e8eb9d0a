//! A plugin built against the first published contract,
//! `trellis:reconciler@0.1.0` (`wit/v0.1`), with `wit-bindgen` alone and no
//! SDK: the host must keep serving modules built before 0.2.0. It
//! reconciles `test.trellis.dev/v1` `Legacy` into one ConfigMap
//! `<parent>-legacy` (`greeting: hello from 0.1.0`), status
//! `{"wit": "0.1.0"}` and `Ready=True`.

mod bindings {
    //! Bindings of `trellis:reconciler@0.1.0`, and their export of
    //! [`super::Legacy`] (exporting takes `unsafe` glue, allowed only here).
    #![allow(unsafe_code, missing_docs, clippy::all)]

    wit_bindgen::generate!({
        path: "../../../wit/v0.1",
        world: "trellis:reconciler/reconciler",
    });

    use super::Legacy;
    export!(Legacy with_types_in self);
}

use bindings::trellis::reconciler::types::{Condition, Error, KindRef, PluginInfo, Request, Response};
use serde_json::{Value, json};

/// What the ConfigMap says.
const GREETING: &str = "hello from 0.1.0";

/// The plugin.
pub struct Legacy;

impl bindings::Guest for Legacy {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "legacy".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            parent: KindRef {
                api_version: "test.trellis.dev/v1".to_owned(),
                kind: "Legacy".to_owned(),
            },
            children: vec![KindRef {
                api_version: "v1".to_owned(),
                kind: "ConfigMap".to_owned(),
            }],
            related: Vec::new(),
            finalizer: false,
        }
    }

    fn reconcile(req: Request) -> Result<Response, Error> {
        let parent: Value =
            serde_json::from_str(&req.parent).map_err(|e| Error::Fatal(format!("the parent is not JSON: {e}")))?;
        let meta = &parent["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        let config_map = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": format!("{name}-legacy"), "namespace": meta["namespace"]},
            "data": {"greeting": GREETING},
        });
        Ok(Response {
            children: vec![config_map.to_string()],
            status: Some(json!({"wit": "0.1.0"}).to_string()),
            conditions: vec![Condition {
                type_: "Ready".to_owned(),
                status: "True".to_owned(),
                reason: "Greeted".to_owned(),
                message: GREETING.to_owned(),
            }],
            events: Vec::new(),
            requeue_after_seconds: None,
            finalized: false,
        })
    }

    fn validate(_obj: String, _old: Option<String>) -> Result<(), Vec<String>> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::Guest;

    #[test]
    fn greets_with_one_config_map() {
        let parent = json!({"apiVersion": "test.trellis.dev/v1", "kind": "Legacy", "metadata": {"name": "old", "namespace": "ns"}});
        let response = Legacy::reconcile(Request {
            parent: parent.to_string(),
            children: Vec::new(),
            related: Vec::new(),
            config: None,
            finalizing: false,
        })
        .unwrap();
        let children: Vec<Value> = response
            .children
            .iter()
            .map(|c| serde_json::from_str(c).unwrap())
            .collect();
        assert_eq!(
            children,
            [
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old-legacy", "namespace": "ns"}, "data": {"greeting": "hello from 0.1.0"}})
            ]
        );
        assert_eq!(response.status.as_deref(), Some(r#"{"wit":"0.1.0"}"#));
        assert_eq!(response.conditions[0].status, "True");
        assert_eq!(Legacy::info().name, "legacy");
    }
}
