//! A deliberately misbehaving plugin for the host's tests: the parent's
//! `spec.mode` picks the misbehaviour (endless loop, memory bomb, panic,
//! bad output, writes outside its namespace, floods of children or events,
//! ...). `ok` behaves.
//!
//! It asks for both admission hooks, and `spec.mode` picks their
//! misbehaviour too: `validate-loop` (an endless loop), `validate-panic`,
//! `validate-refuse` (refuses with "hostile refuses"); `default-loop`,
//! `default-status` (returns the object with `status` set to
//! `{"tampered": true}`, a change the host must refuse) and `default-label`
//! (adds the label `hostile.trellis.dev/defaulted: "yes"`, an allowed
//! change). Any other mode is accepted and left unchanged by the hooks.
//!
//! Its `related` answer misbehaves for `related-undeclared` (a selector of
//! `v1` `Pod`, not a related kind) and `related-loop` (an endless loop);
//! `decorate-undeclared` decorates a ConfigMap (not a related kind) and
//! `decorate-host-key` sets a label under the host's `trellis.dev/`.
//!
//! It asks for a finalizer: a deleted parent stays until it carries the
//! annotation `test.trellis.dev/release: "yes"`.

use trellis_sdk::k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use trellis_sdk::prelude::*;

/// The plugin.
pub struct Hostile;

impl Reconciler for Hostile {
    fn info() -> PluginInfo {
        PluginInfo::new("hostile", "test.trellis.dev/v1", "Hostile")
            .version(env!("CARGO_PKG_VERSION"))
            .child::<ConfigMap>()
            .child::<Secret>()
            .child::<ClusterRoleBinding>()
            .related::<Secret>()
            .with_finalizer()
            .validating()
            .defaulting()
    }

    fn related(parent: &Value) -> Option<Vec<RelatedSelector>> {
        match parent["spec"]["mode"].as_str().unwrap_or("ok") {
            "related-undeclared" => Some(vec![RelatedSelector::kind("v1", "Pod")]),
            "related-loop" => loop {
                std::hint::black_box(parent);
            },
            _ => None,
        }
    }

    fn validate(req: &AdmissionRequest) -> Result<(), Vec<String>> {
        let mode = req
            .object_json()
            .and_then(|o| o["spec"]["mode"].as_str())
            .unwrap_or("ok");
        match mode {
            "validate-loop" => loop {
                std::hint::black_box(mode);
            },
            "validate-panic" => panic!("hostile plugin panics in validate on purpose"),
            "validate-refuse" => Err(vec!["hostile refuses".to_owned()]),
            _ => Ok(()),
        }
    }

    fn default(obj: &mut Value) -> Result<(), Vec<String>> {
        let mode = obj["spec"]["mode"].as_str().unwrap_or("ok").to_owned();
        match mode.as_str() {
            "default-loop" => loop {
                std::hint::black_box(&mode);
            },
            "default-status" => obj["status"] = json!({"tampered": true}),
            "default-label" => obj["metadata"]["labels"]["hostile.trellis.dev/defaulted"] = json!("yes"),
            _ => {}
        }
        Ok(())
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        if req.finalizing() {
            let released = req.parent_json()["metadata"]["annotations"]["test.trellis.dev/release"] == "yes";
            return Ok(if released {
                Response::new().event("Released", "finalized").finalized()
            } else {
                Response::new().requeue_after(std::time::Duration::from_secs(1))
            });
        }
        let mode = req.parent_json()["spec"]["mode"].as_str().unwrap_or("ok").to_owned();
        let config_map = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"mode": mode}});
        match mode.as_str() {
            // The admission modes reconcile as `ok` does.
            "ok" | "validate-loop" | "validate-panic" | "validate-refuse" | "default-loop" | "default-status"
            | "default-label" => Ok(Response::new().child(&config_map(&format!("{}-out", req.name()))).condition(Condition::ready(true, "Fine", "ok"))),
            "loop" => loop {
                std::hint::black_box(&mode);
            },
            "alloc-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => Ok(Response::new().event("Depth", recurse(0).to_string())),
            "panic" => panic!("hostile plugin panics on purpose"),
            "garbage-json" => Ok(Response::new().child(&"this is { not an object")),
            "not-json" => {
                let mut r = Response::new();
                r.push_child(&json!("just a string"));
                Ok(r)
            }
            "huge-response" | "giant-response" => {
                let blob = "x".repeat(1 << 20);
                let mut r = Response::new();
                let mib = if mode == "huge-response" { 8 } else { 64 };
                for i in 0..mib {
                    r.push_child(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("big-{i}")}, "data": {"blob": blob}}));
                }
                Ok(r)
            }
            "related-undeclared" | "related-loop" => Ok(Response::new()),
            "decorate-undeclared" => Ok(Response::new().decorate(Decoration::of::<ConfigMap>("cm").label("a", "b"))),
            "decorate-host-key" => Ok(Response::new().decorate(Decoration::of::<Secret>("s").label("trellis.dev/plugin", "x"))),
            "wrong-kind" => Ok(Response::new().child(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sneaky"}}))),
            "other-namespace" => Ok(Response::new().child(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sneaky", "namespace": "kube-system"}}))),
            "cluster-admin" => Ok(Response::new().child(&json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "hostile-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": req.namespace()}]
            }))),
            "forged-owner" => Ok(Response::new().child(&json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "forged", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "victim", "uid": "00000000-0000-0000-0000-000000000000"}]}
            }))),
            "bad-name" => Ok(Response::new().child(&config_map("Not_A_Valid_Name"))),
            "invalid-spec" => Err(Error::invalid_spec("spec.mode says so")),
            "log-flood" => {
                for i in 0..10_000 {
                    trellis_sdk::log::info(&format!("line {i}"));
                }
                Ok(Response::new())
            }
            "many-children" => {
                let mut r = Response::new();
                for i in 0..2_000 {
                    r.push_child(&config_map(&format!("tiny-{i}")));
                }
                Ok(r)
            }
            "event-flood" => {
                let mut r = Response::new().requeue_after(std::time::Duration::ZERO);
                for i in 0..2_000 {
                    r = r.event("Flood", format!("event {i}"));
                }
                Ok(r)
            }
            other => Err(Error::invalid_spec(format!("unknown mode {other:?}"))),
        }
    }
}

/// Recurses until the stack runs out.
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    if pad[0] == u64::MAX {
        depth
    } else {
        recurse(depth + 1) + pad[63]
    }
}

trellis_sdk::export_reconciler!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile(mode: &str) -> Value {
        json!({"apiVersion": "test.trellis.dev/v1", "kind": "Hostile", "metadata": {"name": "h"}, "spec": {"mode": mode}})
    }

    #[test]
    fn validate_refuses_or_accepts_by_mode() {
        let validate = |mode| {
            Hostile::validate(&AdmissionRequest::for_test(
                Operation::Create,
                Some(hostile(mode)),
                None,
            ))
        };
        assert_eq!(validate("validate-refuse"), Err(vec!["hostile refuses".to_owned()]));
        assert_eq!(validate("ok"), Ok(()));
        assert_eq!(validate("default-status"), Ok(()));
        let delete = AdmissionRequest::for_test(Operation::Delete, None, Some(hostile("validate-refuse")));
        assert_eq!(Hostile::validate(&delete), Ok(()));
    }

    #[test]
    fn default_tampers_or_labels_by_mode() {
        let defaulted = |mode| {
            let mut obj = hostile(mode);
            Hostile::default(&mut obj).unwrap();
            obj
        };
        assert_eq!(defaulted("default-status")["status"], json!({"tampered": true}));
        assert_eq!(
            defaulted("default-label")["metadata"]["labels"]["hostile.trellis.dev/defaulted"],
            "yes"
        );
        assert_eq!(defaulted("validate-refuse"), hostile("validate-refuse"));
    }
}
