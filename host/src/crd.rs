//! The registration kinds (`trellis.dev/v1alpha1`), named as cert-manager
//! names Issuer and ClusterIssuer:
//! - `ClusterReconcilerPlugin` (cluster-scoped): a platform admin registers
//!   a plugin for a kind in every namespace, from the host's plugins folder
//!   or a ConfigMap, acting as its `serviceAccountRef`;
//! - `ReconcilerPlugin` (namespaced): a tenant registers a plugin for its
//!   own namespace only, from a ConfigMap of that namespace; the host acts as
//!   the tenant's `serviceAccountName` for everything the plugin causes.
//!
//! The CRDs in `deploy/crds/` are generated from these types (`trellis crd`).

use crate::runtime::{KindRef, Limits};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a registration of either kind says about its plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// The kind the plugin reconciles. Defaults to what the module's `info`
    /// says; when given, it must agree with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<KindRef>,
    /// Kinds the plugin may emit. Defaults to the module's `info`; when
    /// given, it narrows it (a kind `info` does not list is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<KindRef>>,
    /// Kinds the plugin may read. Defaults to the module's `info`; when
    /// given, it narrows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<Vec<KindRef>>,
    /// Where the module comes from.
    pub module: ModuleSource,
    /// Free-form JSON handed to the plugin as `config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub config: Option<serde_json::Value>,
    /// Limits of each plugin call.
    #[serde(default)]
    pub limits: PluginLimits,
    /// How the plugin's admission webhooks behave (when it asks for any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionSpec>,
}

/// Settings of a registration's admission webhooks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionSpec {
    /// What the webhooks answer when the plugin fails (a trap, its
    /// deadline): `Fail` refuses the request with the plugin's error,
    /// `Ignore` admits it with a warning. Default `Fail`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

/// A webhook's answer when its plugin fails, as in
/// `ValidatingWebhookConfiguration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailurePolicy {
    /// Refuse the request.
    #[default]
    Fail,
    /// Admit the request.
    Ignore,
}

impl FailurePolicy {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

/// Registers a reconciler plugin for a parent kind in every namespace
/// (platform admins).
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "trellis.dev",
    version = "v1alpha1",
    kind = "ClusterReconcilerPlugin",
    plural = "clusterreconcilerplugins",
    shortname = "crp",
    status = "ReconcilerPluginStatus",
    printcolumn = r#"{"name":"Parent","type":"string","jsonPath":".spec.parent.kind"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","priority":1,"jsonPath":".status.digest"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReconcilerPluginSpec {
    #[serde(flatten)]
    pub plugin: PluginSpec,
    /// The ServiceAccount the host acts as for this plugin: watching,
    /// applying children, writing status. Its RBAC bounds what the plugin's
    /// output can do. Default: `trellis-plugin-<this name>` in the host's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountRef>,
}

/// A ServiceAccount by namespace and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceAccountRef {
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Registers a tenant's reconciler plugin for a parent kind in this
/// namespace. Its module comes from a ConfigMap of this namespace; the host
/// reads, applies and writes status as `serviceAccountName`, so the
/// ServiceAccount's RBAC bounds what the plugin's output can do.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "trellis.dev",
    version = "v1alpha1",
    kind = "ReconcilerPlugin",
    plural = "reconcilerplugins",
    shortname = "rp",
    namespaced,
    status = "ReconcilerPluginStatus",
    printcolumn = r#"{"name":"Parent","type":"string","jsonPath":".spec.parent.kind"}"#,
    printcolumn = r#"{"name":"ServiceAccount","type":"string","jsonPath":".spec.serviceAccountName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","priority":1,"jsonPath":".status.digest"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilerPluginSpec {
    #[serde(flatten)]
    pub plugin: PluginSpec,
    /// The ServiceAccount of this namespace the host acts as for this
    /// plugin: watching, applying children, writing status.
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: String,
}

/// Where a module's bytes come from: exactly one of `file`, `configMap`
/// and `oci`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.file) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.oci) ? 1 : 0) == 1",
    "message": "set exactly one of file, configMap and oci"
}]))]
pub struct ModuleSource {
    /// A file name in the host's plugins folder, e.g. `msdeploy.wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A key of a ConfigMap's `binaryData` holding the module, plain or
    /// gzip-compressed (a ConfigMap holds at most 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapModule>,
    /// An OCI artifact in the Wasm layout (`trellis plugin push`), pulled
    /// by the host; a tag is re-resolved every `--oci-refresh-seconds` and
    /// whenever this registration's spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciModule>,
    /// The sha256 (hex) of the module (uncompressed); another module is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

/// A module in a ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapModule {
    /// The ConfigMap's namespace: required for a ClusterReconcilerPlugin;
    /// a ReconcilerPlugin's is its own (another is refused).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
    /// The key in `binaryData` (default `module.wasm`).
    #[serde(default = "default_module_key")]
    pub key: String,
}

fn default_module_key() -> String {
    "module.wasm".into()
}

impl std::fmt::Display for ConfigMapModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigMap {}/{} key {}", self.namespace, self.name, self.key)
    }
}

/// A module published as an OCI artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciModule {
    /// `registry/repository:tag` or `registry/repository@sha256:…`.
    #[schemars(length(min = 1, max = 1024))]
    pub reference: String,
    /// A pull Secret (`kubernetes.io/dockerconfigjson` or
    /// `kubernetes.io/dockercfg`) holding the registry's credentials, read
    /// as the registration acts (its ServiceAccount must be able to `get`
    /// it). A ReconcilerPlugin may name only a Secret of its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<SecretRef>,
    /// A cosign public key (PEM, ECDSA P-256, `cosign generate-key-pair`'s
    /// `cosign.pub`): the artifact must carry a cosign signature that
    /// verifies under it (`cosign sign --key`), or it is refused with
    /// `SignatureInvalid`. Checked offline, with no transparency log. A host
    /// run with `--cosign-key` requires its own key's signature besides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub cosign_public_key: Option<String>,
}

/// A Secret by name, in a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's namespace: required for a ClusterReconcilerPlugin; a
    /// ReconcilerPlugin's is its own (another is refused).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl std::fmt::Display for OciModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OCI artifact {}", self.reference)
    }
}

/// Limits of one plugin call; unset fields take the host's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginLimits {
    /// Deadline of one call, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub timeout_ms: Option<u64>,
    /// Memory of one instance, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub memory_mib: Option<usize>,
    /// Largest response, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_output_kib: Option<usize>,
    /// Reconciles of this plugin running at once (its own queue feeds them);
    /// at most the host's `--concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrent_reconciles: Option<u16>,
}

impl PluginLimits {
    /// These limits over `defaults`.
    pub fn over(&self, defaults: Limits) -> Limits {
        Limits {
            timeout: self.timeout_ms.map_or(defaults.timeout, Duration::from_millis),
            memory_bytes: self.memory_mib.map_or(defaults.memory_bytes, |m| m << 20),
            response_bytes: self.max_output_kib.map_or(defaults.response_bytes, |k| k << 10),
        }
    }
}

/// What the host observed of a registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilerPluginStatus {
    /// `Ready`: the module loaded and its controller runs.
    #[serde(default)]
    pub conditions: Vec<RegistrationCondition>,
    /// The sha256 of the module that serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The plugin's name and version from its `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// For a module of `spec.module.oci`: the artifact that serves, pinned
    /// by its manifest's digest (`registry/repository@sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A condition on a registration (Kubernetes API conventions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationCondition {
    /// `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: String,
    /// The generation the condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// The CRD YAML of `ClusterReconcilerPlugin`, as committed in `deploy/crds/`.
pub fn cluster_crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&ClusterReconcilerPlugin::crd()).expect("the CRD serialises")
}

/// The CRD YAML of the namespaced `ReconcilerPlugin`, as committed in `deploy/crds/`.
pub fn tenant_crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&ReconcilerPlugin::crd()).expect("the CRD serialises")
}
