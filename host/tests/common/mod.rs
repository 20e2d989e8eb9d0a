//! End-to-end harness: a Trellis host running in-process against the test
//! control plane of this test binary, watching one test namespace, with a
//! plugins folder of its own.

#![allow(dead_code)] // each test binary uses a part of it

mod deploy;
mod oci;
mod tenants;
#[allow(unused_imports)] // each test binary uses a part of it
pub use deploy::apply_deploy;
#[allow(unused_imports)] // each test binary uses a part of it
pub use oci::{
    apply_greeter, eventually_greets, eventually_serves_artifact, pull_secret, push_module, registry_access,
};
#[allow(unused_imports)] // each test binary uses a part of it
pub use tenants::{onboard, onboard_greeter, onboard_hostile, tenant_registration_is};

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trellis::controller::PluginAccounts;
use trellis::host::{HostOptions, run_host};
use trellis::metrics::Metrics;
use trellis::server::Readiness;
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::{crd_from_yaml, install_crd, until};

/// The CRD of the msdeploy sample, as shipped.
pub const MSDEPLOY_CRD: &str = include_str!("../../../deploy/crds/custom.ops_microservicedeploys.yaml");
/// The msdeploy sample users already write.
pub const MSDEPLOY_SAMPLE: &str = include_str!("../../../deploy/samples/microservicedeploy.yaml");

/// How long an end-to-end expectation may take.
pub const SETTLE: Duration = Duration::from_secs(60);

/// A host running in a task of the test's runtime.
pub struct TestHost {
    pub plugins_dir: tempfile::TempDir,
    pub metrics: Metrics,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TestHost {
    /// Starts a host watching `ns`, with the given plugin crates copied into
    /// its plugins folder (as `<crate>.wasm`).
    pub async fn start(ns: &TestNamespace, plugins: &[&str]) -> Self {
        let plugins_dir = tempfile::tempdir().expect("a plugins dir");
        for plugin in plugins {
            add_plugin(plugins_dir.path(), plugin, &format!("{plugin}.wasm"));
        }
        Self::start_in(ns, plugins_dir, |o| o).await
    }

    /// Starts a host over an existing plugins folder, with options adjusted by `tune`.
    pub async fn start_in(
        ns: &TestNamespace,
        plugins_dir: tempfile::TempDir,
        tune: impl FnOnce(HostOptions) -> HostOptions,
    ) -> Self {
        let namespace = ns.name().to_owned();
        Self::start_with_client(ns.client(), plugins_dir, |mut o| {
            o.namespace = Some(namespace);
            // Not about rights: the plugins act with the test's admin client.
            o.plugin_accounts = PluginAccounts::HostClient;
            tune(o)
        })
        .await
    }

    /// Starts a host with its own client (e.g. one impersonating the
    /// host's ServiceAccount), watching all namespaces unless `tune` says otherwise.
    pub async fn start_with_client(
        client: kube::Client,
        plugins_dir: tempfile::TempDir,
        tune: impl FnOnce(HostOptions) -> HostOptions,
    ) -> Self {
        init_logs();
        let mut options = HostOptions::new(plugins_dir.path());
        options.poll = Duration::from_millis(300);
        let options = tune(options);
        let metrics = Metrics::new();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                run_host(client, options, metrics, Readiness::default(), shutdown)
                    .await
                    .expect("the host runs");
            }
        });
        Self {
            plugins_dir,
            metrics,
            stop,
            task,
        }
    }

    /// Stops the host gracefully and waits for it; returns its plugins folder.
    pub async fn stop(self) -> tempfile::TempDir {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
        self.plugins_dir
    }

    /// Kills the host without a graceful shutdown (as a crash would).
    pub fn kill(self) -> tempfile::TempDir {
        self.task.abort();
        self.plugins_dir
    }
}

/// Host logs in the test output (`TRELLIS_LOG`, default `trellis=info`).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG").unwrap_or_else(|_| "trellis=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Copies a built plugin crate into `dir` as `file`.
pub fn add_plugin(dir: &Path, plugin_crate: &str, file: &str) -> PathBuf {
    let target = dir.join(file);
    std::fs::copy(trellis::testing::guest_module(plugin_crate), &target).expect("copy the plugin module");
    target
}

/// Installs the msdeploy CRD.
pub async fn install_msdeploy_crd(client: &kube::Client) {
    install_crd(client, &crd_from_yaml(MSDEPLOY_CRD)).await;
}

/// A dynamic API of `kind` in `group/version`, in the test namespace.
pub fn dynamic_api(ns: &TestNamespace, group: &str, version: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(ns.client(), ns.name(), &ApiResource::from_gvk(&gvk))
}

/// The MicroServiceDeploy API of the test namespace.
pub fn msdeploy_api(ns: &TestNamespace) -> Api<DynamicObject> {
    dynamic_api(ns, "custom.ops", "v1", "MicroServiceDeploy")
}

/// Applies an object (YAML or JSON value) as the test user would with `kubectl apply --server-side`.
pub async fn apply_as_user(api: &Api<DynamicObject>, object: &Value) -> DynamicObject {
    let name = object["metadata"]["name"].as_str().expect("a name").to_owned();
    api.patch(&name, &PatchParams::apply("test-user").force(), &Patch::Apply(object))
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

/// The sample parent, as a JSON value.
pub fn msdeploy_sample() -> Value {
    serde_yaml::from_str(MSDEPLOY_SAMPLE).expect("the sample parses")
}

/// Waits until `get` finds the object, and returns it.
pub async fn eventually_exists<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    until(&format!("{name} to exist"), SETTLE, || async {
        api.get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not there yet".to_string())
    })
    .await
}

/// Waits until the object is gone.
pub async fn eventually_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    until(&format!("{name} to be deleted"), SETTLE, || async {
        match api.get_opt(name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await
}

/// The parent's `Ready` condition as (status, reason, message), if any.
pub fn ready_condition(object: &DynamicObject) -> Option<(String, String, String)> {
    let conditions = object.data["status"]["conditions"].as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
    let text = |k: &str| ready[k].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// The value of a counter sample of the host's metrics whose line starts
/// with `series` (e.g. `trellis_writes_total{plugin="msdeploy",write="applied"}`); 0 if absent.
pub fn counter(metrics: &Metrics, series: &str) -> f64 {
    metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The CRD of `ClusterReconcilerPlugin`, as shipped.
pub const CLUSTER_RECONCILER_PLUGIN_CRD: &str =
    include_str!("../../../deploy/crds/trellis.dev_clusterreconcilerplugins.yaml");
/// The CRD of the namespaced (tenant) `ReconcilerPlugin`, as shipped.
pub const RECONCILER_PLUGIN_CRD: &str = include_str!("../../../deploy/crds/trellis.dev_reconcilerplugins.yaml");

/// A CRD for the hostile test plugin's parent kind, `test.trellis.dev/v1` `Hostile`.
pub const HOSTILE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: hostiles.test.trellis.dev
spec:
  group: test.trellis.dev
  scope: Namespaced
  names: { plural: hostiles, singular: hostile, kind: Hostile }
  versions:
  - name: v1
    served: true
    storage: true
    subresources: { status: {} }
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
          status: { type: object, x-kubernetes-preserve-unknown-fields: true }
"#;

/// The Hostile API of the test namespace.
pub fn hostile_api(ns: &TestNamespace) -> Api<DynamicObject> {
    dynamic_api(ns, "test.trellis.dev", "v1", "Hostile")
}

/// A Hostile parent misbehaving in `mode`.
pub fn hostile(name: &str, mode: &str) -> Value {
    serde_json::json!({
        "apiVersion": "test.trellis.dev/v1",
        "kind": "Hostile",
        "metadata": { "name": name },
        "spec": { "mode": mode },
    })
}

/// Waits until the parent's `Ready` condition has `status` and `reason`; returns its message.
pub async fn eventually_ready_is(api: &Api<DynamicObject>, name: &str, status: &str, reason: &str) -> String {
    until(&format!("{name} to be Ready={status} ({reason})"), SETTLE, || async {
        let object = api.get(name).await.map_err(|e| e.to_string())?;
        match ready_condition(&object) {
            Some((s, r, message)) if s == status && r == reason => Ok(message),
            other => Err(format!("Ready condition {other:?}")),
        }
    })
    .await
}

/// A CRD for the greeter test plugins' parent kind, `test.trellis.dev/v1` `Greeter`.
pub const GREETER_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: greeters.test.trellis.dev
spec:
  group: test.trellis.dev
  scope: Namespaced
  names: { plural: greeters, singular: greeter, kind: Greeter }
  versions:
  - name: v1
    served: true
    storage: true
    subresources: { status: {} }
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
          status: { type: object, x-kubernetes-preserve-unknown-fields: true }
"#;

/// Server-side applies every document of a YAML stream (ConfigMaps and
/// registrations, as `trellis plugin pack` prints them).
pub async fn apply_yaml_stream(client: &kube::Client, yaml: &str) {
    trellis_testenv::wait::apply_yaml_stream(client, yaml, "test-admin").await;
}

/// A registration kind: both carry the same status.
pub trait RegistrationObject:
    kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug
{
    fn registration_status(&self) -> Option<&trellis::crd::ReconcilerPluginStatus>;
}

impl RegistrationObject for trellis::crd::ClusterReconcilerPlugin {
    fn registration_status(&self) -> Option<&trellis::crd::ReconcilerPluginStatus> {
        self.status.as_ref()
    }
}

impl RegistrationObject for trellis::crd::ReconcilerPlugin {
    fn registration_status(&self) -> Option<&trellis::crd::ReconcilerPluginStatus> {
        self.status.as_ref()
    }
}

/// Waits until the registration's `Ready` condition is `status` with
/// `reason`; returns its message.
pub async fn registration_ready_is<K: RegistrationObject>(
    api: &Api<K>,
    name: &str,
    status: &str,
    reason: &str,
) -> String {
    until(&format!("{name} to be {status} ({reason})"), SETTLE, || async {
        let object = api.get(name).await.map_err(|e| e.to_string())?;
        let ready = object
            .registration_status()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .ok_or("no Ready condition yet")?;
        if ready.status == status && ready.reason == reason {
            Ok(ready.message.clone())
        } else {
            Err(format!("Ready={} {}: {}", ready.status, ready.reason, ready.message))
        }
    })
    .await
}
