//! `deploy/` applied to the test control plane, as `kubectl apply -k deploy/` would.

use std::path::Path;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::pinned_kind;
use trellis_testenv::wait::install_crd;

/// Every object of the YAML files that `deploy/kustomization.yaml` lists, in order.
pub fn deploy_objects() -> Vec<serde_json::Value> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let kustomization: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap()).unwrap();
    let mut objects = Vec::new();
    for file in kustomization["resources"].as_array().unwrap() {
        let text = std::fs::read_to_string(deploy.join(file.as_str().unwrap())).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    objects
}

async fn apply(client: &kube::Client, object: &serde_json::Value, dry_run: bool) {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let (resource, caps) = pinned_kind(client, &gvk).await.unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), ns, &ApiResource { ..resource })
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply("test-admin").force();
    params.dry_run = dry_run;
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .unwrap_or_else(|e| panic!("applying {} {name} from deploy/: {e}", gvk.kind));
}

/// Applies every object `deploy/kustomization.yaml` lists; the Deployment
/// (which would only run with an image) as a dry run, to check it validates.
pub async fn apply_deploy(admin: &kube::Client) {
    for object in deploy_objects() {
        let kind = object["kind"].as_str().unwrap();
        if kind == "CustomResourceDefinition" {
            install_crd(admin, &serde_json::from_value(object.clone()).unwrap()).await;
        } else {
            apply(admin, &object, kind == "Deployment").await;
        }
    }
}
