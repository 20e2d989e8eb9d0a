//! The `RedisEnterpriseCluster` custom resource as Redis Enterprise
//! operator users write it, and the checks that settle its defaults.

use serde::Deserialize;
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

/// A `RedisEnterpriseCluster` (only what the plugin reads).
#[derive(Debug, Deserialize)]
pub struct RedisEnterpriseCluster {
    pub spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub nodes: i32,
    #[serde(default)]
    pub persistent_spec: PersistentSpec,
    pub ui_service_type: Option<String>,
    pub username: Option<String>,
    pub redis_enterprise_node_resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub redis_enterprise_image_spec: ImageSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistentSpec {
    /// `true`/`false`, or the strings `'true'`/`'false'` as users write it.
    pub enabled: Option<Value>,
    pub storage_class_name: Option<String>,
    pub volume_size: Option<Quantity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    pub image_pull_policy: Option<String>,
    pub repository: Option<String>,
    pub version_tag: Option<String>,
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
