//! Helpers of the OCI module tests: pushing test plugins to the test
//! registry, pull Secrets for it, waiting for a registration to serve an
//! artifact, and the greeter test plugin's parents and greetings.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::{Value, json};
use trellis::oci::{self, RegistryAccess};
use trellis::testing::guest_module;
use trellis_testenv::TestNamespace;
use trellis_testenv::registry::{REGISTRY_PASSWORD, REGISTRY_USER, Registry};
use trellis_testenv::wait::until;

use super::{RegistrationObject, SETTLE, apply_as_user, dynamic_api};

/// The test registry's credentials and CA.
pub fn registry_access(registry: &Registry) -> RegistryAccess {
    RegistryAccess {
        basic: Some((REGISTRY_USER.to_owned(), REGISTRY_PASSWORD.to_owned())),
        extra_roots_pem: vec![std::fs::read(registry.ca_cert()).unwrap()],
    }
}

/// Pushes a test plugin's module under `reference`; returns its pinned
/// reference and the module's sha256.
pub async fn push_module(registry: &Registry, plugin_crate: &str, reference: &str) -> (String, String) {
    let module = std::fs::read(guest_module(plugin_crate)).unwrap();
    let pushed = oci::push(&module, reference, &registry_access(registry))
        .await
        .unwrap_or_else(|e| panic!("pushing {plugin_crate}: {e}"));
    (pushed.pinned, pushed.module_sha256)
}

/// A `kubernetes.io/dockerconfigjson` Secret with the registry's credentials.
pub fn pull_secret(registry: &Registry, namespace: &str, name: &str) -> Value {
    let config = json!({"auths": {registry.host(): {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}}});
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": config.to_string()}})
}

/// Waits until the registration's status names `artifact` (and so the
/// module that serves came from it); returns the status's module digest.
pub async fn eventually_serves_artifact<K: RegistrationObject>(api: &Api<K>, name: &str, artifact: &str) -> String {
    until(&format!("{name} to serve {artifact}"), SETTLE, || async {
        let object = api.get(name).await.map_err(|e| e.to_string())?;
        let status = object.registration_status().ok_or("no status yet")?;
        match (&status.artifact, &status.digest) {
            (Some(serving), Some(digest)) if serving == artifact => Ok(digest.clone()),
            other => Err(format!("serving {other:?}: {:?}", status.conditions)),
        }
    })
    .await
}

/// Waits until the greeter test plugin's ConfigMap for `parent` says
/// `greeting`.
pub async fn eventually_greets(ns: &TestNamespace, parent: &str, greeting: &str) {
    let config_maps = ns.api::<ConfigMap>();
    let name = format!("{parent}-greeting");
    until(&format!("{name} to say {greeting}"), SETTLE, || async {
        let said = config_maps
            .get_opt(&name)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|cm| cm.data.unwrap_or_default().get("greeting").cloned());
        if said.as_deref() == Some(greeting) {
            Ok(())
        } else {
            Err(format!("says {said:?}"))
        }
    })
    .await;
}

/// Applies a Greeter parent `name` as a user would.
pub async fn apply_greeter(ns: &TestNamespace, name: &str) {
    let greeters = dynamic_api(ns, "test.trellis.dev", "v1", "Greeter");
    apply_as_user(
        &greeters,
        &json!({"apiVersion": "test.trellis.dev/v1", "kind": "Greeter", "metadata": {"name": name}, "spec": {}}),
    )
    .await;
}
