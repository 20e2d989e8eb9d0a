//! The `RedisEnterpriseCluster` custom resource as Redis Enterprise
//! operator users write it, and the checks that settle its defaults.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use trellis_sdk::k8s_openapi::api::core::v1::ResourceRequirements;
use trellis_sdk::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use trellis_sdk::quantity;

/// The operator's defaults.
const DEFAULT_REPOSITORY: &str = "redislabs/redis";
const DEFAULT_TAG: &str = "latest";
const DEFAULT_USERNAME: &str = "demo@redislabs.com";
const DEFAULT_CPU: &str = "2";
const DEFAULT_MEMORY: &str = "4Gi";
/// Persistent volumes default to this many times the node's memory limit.
const VOLUME_PER_MEMORY: i32 = 5;
const SERVICE_TYPES: [&str; 3] = ["ClusterIP", "NodePort", "LoadBalancer"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

/// A `RedisEnterpriseCluster` as the plugin reads it.
#[derive(Debug, Deserialize)]
pub struct Parent {
    pub spec: Spec,
}

// The CRD, deploy/crds/app.redislabs.com_redisenterpriseclusters.yaml, is
// generated from `Spec` and `Status` by kube's `CustomResource` derive, in
// tests only: `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-redis crd`.

/// A Redis Enterprise cluster of `nodes` nodes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::without_defaults))]
#[cfg_attr(
    test,
    kube(
        group = "app.redislabs.com",
        version = "v1alpha1",
        kind = "RedisEnterpriseCluster",
        namespaced,
        status = "Status",
        shortname = "rec",
        doc = "A Redis Enterprise cluster: a StatefulSet of `nodes` nodes, their Services, credentials and a disruption budget",
        printcolumn = r#"{"name": "Nodes", "type": "integer", "jsonPath": ".spec.nodes"}"#,
        printcolumn = r#"{"name": "Ready", "type": "integer", "jsonPath": ".status.readyNodes"}"#,
        printcolumn = r#"{"name": "State", "type": "string", "jsonPath": ".status.state"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
pub struct Spec {
    /// How many Redis Enterprise nodes run.
    #[cfg_attr(test, schemars(range(min = 1, max = 100)))]
    pub nodes: i32,
    /// Persistent storage for each node.
    #[serde(default)]
    pub persistent_spec: PersistentSpec,
    /// The type of the Service of the web UI (default ClusterIP).
    #[cfg_attr(test, schemars(extend("enum" = ["ClusterIP", "NodePort", "LoadBalancer"])))]
    pub ui_service_type: Option<String>,
    /// The cluster administrator's user name.
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub username: Option<String>,
    /// Each node's resources (default 2 CPUs and 4Gi, requested and limited).
    #[cfg_attr(test, schemars(transform = trellis_sdk::crd::without_descriptions))]
    pub redis_enterprise_node_resources: Option<ResourceRequirements>,
    /// The nodes' image.
    #[serde(default)]
    pub redis_enterprise_image_spec: ImageSpec,
}

/// Persistent storage for each node.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct PersistentSpec {
    /// `true`/`false`, or the strings `'true'`/`'false'` as users write it.
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "flag_schema"))]
    pub enabled: Option<Value>,
    /// The StorageClass of the volumes (the cluster's default if unset).
    pub storage_class_name: Option<String>,
    /// Each volume's size (default five times the node's memory limit).
    #[cfg_attr(test, schemars(transform = trellis_sdk::crd::without_descriptions))]
    pub volume_size: Option<Quantity>,
}

/// The schema of `persistentSpec.enabled`: a boolean or, as in the operator's
/// own examples, the string 'true'/'false'. A structural schema cannot say
/// "boolean or string", and CEL cannot see an untyped field (the API server
/// refuses such a rule: "undefined field 'enabled'"), but an enum of mixed
/// types is allowed and refuses anything else: 'Unsupported value: "maybe"'.
#[cfg(test)]
fn flag_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
        "enum": [true, false, "true", "false"],
    })
}

/// The nodes' image.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct ImageSpec {
    #[cfg_attr(test, schemars(extend("enum" = ["Always", "IfNotPresent", "Never"])))]
    pub image_pull_policy: Option<String>,
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub repository: Option<String>,
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub version_tag: Option<String>,
}

/// What the plugin reports of a cluster.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
pub struct Status {
    /// PendingCreation, Initializing or Running.
    pub state: String,
    pub nodes: i32,
    pub ready_nodes: i32,
    /// The Secret holding the administrator's credentials.
    pub credentials_secret: String,
    /// The Service of the web UI.
    pub ui_service: String,
}

/// Persistent storage for every node.
#[derive(Debug)]
pub struct Storage {
    pub class: Option<String>,
    pub size: Quantity,
}

/// A spec that passed the checks, defaults filled in.
#[derive(Debug)]
pub struct Checked {
    pub nodes: i32,
    pub image: String,
    pub pull_policy: String,
    pub resources: ResourceRequirements,
    pub storage: Option<Storage>,
    pub ui_service_type: String,
    pub username: String,
}

fn flag(value: Option<&Value>) -> Result<bool, String> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(format!("persistentSpec.enabled must be true or false, not {other}")),
    }
}

impl Spec {
    pub fn checked(&self) -> Result<Checked, String> {
        if self.nodes < 1 {
            return Err(format!("nodes must be at least 1, not {}", self.nodes));
        }
        let ui_service_type = self.ui_service_type.clone().unwrap_or_else(|| "ClusterIP".to_owned());
        if !SERVICE_TYPES.contains(&ui_service_type.as_str()) {
            return Err(format!(
                "uiServiceType {ui_service_type:?} is not one of {}",
                SERVICE_TYPES.join(", ")
            ));
        }
        let image_spec = &self.redis_enterprise_image_spec;
        let pull_policy = image_spec
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".to_owned());
        if !PULL_POLICIES.contains(&pull_policy.as_str()) {
            return Err(format!(
                "imagePullPolicy {pull_policy:?} is not one of {}",
                PULL_POLICIES.join(", ")
            ));
        }
        let image = format!(
            "{}:{}",
            image_spec.repository.as_deref().unwrap_or(DEFAULT_REPOSITORY),
            image_spec.version_tag.as_deref().unwrap_or(DEFAULT_TAG)
        );
        let resources = self.redis_enterprise_node_resources.clone().unwrap_or_else(|| {
            let amounts = [("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
                .collect::<std::collections::BTreeMap<_, _>>();
            ResourceRequirements {
                limits: Some(amounts.clone()),
                requests: Some(amounts),
                ..Default::default()
            }
        });
        let storage = if flag(self.persistent_spec.enabled.as_ref())? {
            let memory = resources
                .limits
                .as_ref()
                .and_then(|l| l.get("memory"))
                .map_or(DEFAULT_MEMORY, |q| q.0.as_str());
            let size = match &self.persistent_spec.volume_size {
                Some(size) => size.clone(),
                None => Quantity(
                    quantity::times(memory, VOLUME_PER_MEMORY)
                        .ok_or_else(|| format!("memory limit {memory:?} is not a quantity"))?,
                ),
            };
            Some(Storage {
                class: self.persistent_spec.storage_class_name.clone(),
                size,
            })
        } else {
            None
        };
        Ok(Checked {
            nodes: self.nodes,
            image,
            pull_policy,
            resources,
            storage,
            ui_service_type,
            username: self.username.clone().unwrap_or_else(|| DEFAULT_USERNAME.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_is_generated_from_the_types() {
        use kube::CustomResourceExt;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/crds/app.redislabs.com_redisenterpriseclusters.yaml"
        );
        trellis_sdk::crd::assert_current(&RedisEnterpriseCluster::crd(), path);
    }
}
