//! Waiting in tests: poll until a condition holds, install CRDs, apply
//! manifests.
//!
//! A test that times out fails with what it waited for and the last thing it
//! saw, not just "timeout".

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};

/// How often [`until`] polls.
const POLL: Duration = Duration::from_millis(200);

/// Polls `check` every 200 ms until it returns `Ok`, and returns that value.
///
/// # Panics
/// After `timeout`, naming `what` and the last error `check` returned.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Server-side applies a CRD (field manager `trellis-testenv`) and waits
/// until the apiserver reports it `Established`. Returns its name.
///
/// # Panics
/// If the CRD is rejected or not established within 30 s.
pub async fn install_crd(client: &kube::Client, crd: &CustomResourceDefinition) -> String {
    let name = crd.metadata.name.clone().expect("a CRD has a name");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply("trellis-testenv").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot apply the CRD {name}: {e}"));
    until(
        &format!("CRD {name} to be established"),
        Duration::from_secs(30),
        || async {
            let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established {
                Ok(())
            } else {
                Err(format!("conditions: {:?}", crd.status))
            }
        },
    )
    .await;
    name
}

/// Parses a CRD from YAML text (e.g. `include_str!` of a file in `deploy/crds`).
///
/// # Panics
/// If the text is not a CRD.
pub fn crd_from_yaml(yaml: &str) -> CustomResourceDefinition {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("not a CustomResourceDefinition: {e}"))
}

/// Applies every object of a YAML stream (server-side apply, forced, as
/// `field_manager`), each to the namespace it names or cluster-wide.
///
/// # Panics
/// On YAML that is no object with `apiVersion`, `kind` and a name, or when
/// an apply fails.
pub async fn apply_yaml_stream(client: &kube::Client, yaml: &str, field_manager: &str) {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document).expect("YAML");
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().expect("apiVersion");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let kind = value["kind"].as_str().expect("kind");
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let name = value["metadata"]["name"].as_str().expect("name");
        let api: Api<DynamicObject> = match value["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(name, &PatchParams::apply(field_manager).force(), &Patch::Apply(&value))
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }
}
