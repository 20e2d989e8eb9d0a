//! The `MicroServiceDeploy` custom resource as users write it, and the
//! checks that turn its spec into settled values.

use serde::{Deserialize, Serialize};
use trellis_sdk::k8s_openapi::api::core::v1::ResourceRequirements;

/// Largest `replicas` accepted.
const MAX_REPLICAS: i32 = 1000;

/// A `MicroServiceDeploy` as the plugin reads it.
#[derive(Debug, Deserialize)]
pub struct Parent {
    /// The instance's desired state.
    pub spec: Spec,
}

// The CRD, deploy/crds/custom.ops_microservicedeploys.yaml, is generated
// from `Spec` and `Status` by kube's `CustomResource` derive, in tests only:
// `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-msdeploy crd`.

/// A micro-service: a Deployment of `image` behind a Service, with an
/// optional autoscaler, auth sidecar, config and quota. Field names as in the
/// CRD users already have.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::without_defaults))]
#[cfg_attr(
    test,
    kube(
        group = "custom.ops",
        version = "v1",
        kind = "MicroServiceDeploy",
        namespaced,
        status = "Status",
        shortname = "msd",
        doc = "A micro-service: a Deployment of `image` behind a Service, with an optional autoscaler, auth, config and quota",
        printcolumn = r#"{"name": "Image", "type": "string", "jsonPath": ".spec.image"}"#,
        printcolumn = r#"{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}"#,
        printcolumn = r#"{"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"}"#,
        printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
pub struct Spec {
    /// The service's short name (a DNS label).
    #[cfg_attr(test, schemars(length(max = 63), regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub ms_name: Option<String>,
    /// The name of the children (a DNS label; default the object's name).
    #[cfg_attr(test, schemars(length(max = 63), regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub full_name: Option<String>,
    pub version: Option<String>,
    /// The HTTP path the service answers on.
    pub path: Option<String>,
    /// The container image.
    #[cfg_attr(test, schemars(required, length(min = 1)))]
    pub image: Option<String>,
    #[cfg_attr(test, schemars(range(min = 0, max = 1000)))]
    pub replicas: Option<i32>,
    /// Adds an autoscaler of up to three times `replicas`.
    #[serde(default)]
    pub autoscaling: bool,
    /// Puts an authenticating proxy in front of the service.
    #[serde(default)]
    pub need_auth: bool,
    /// The service's configuration file, mounted from a ConfigMap.
    pub config: Option<String>,
    /// Requests and limits of each pod. A ResourceQuota sized for the
    /// instance's most pods is created only when the namespace is dedicated
    /// to the instance (its Namespace carries the label
    /// msdeploy.trellis.dev/dedicated-to=<fullName or name>), since a quota
    /// governs every pod of its namespace; elsewhere the condition Quota says
    /// why there is none.
    #[cfg_attr(test, schemars(transform = trellis_sdk::crd::without_descriptions))]
    pub resource_requirements: Option<ResourceRequirements>,
    /// Scales the Deployment to zero, keeping everything else.
    #[serde(default)]
    pub idle: bool,
    /// Written by some users' tooling; kept, not read.
    pub creation_timestamp: Option<String>,
}

/// What the plugin reports from the observed Deployment.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
pub struct Status {
    /// Idle, Running or Progressing.
    pub phase: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    /// The in-cluster DNS name of the Service.
    pub service: String,
}

/// A spec that passed the checks.
#[derive(Debug)]
pub struct Checked {
    pub ms_name: Option<String>,
    pub full_name: Option<String>,
    pub version: Option<String>,
    pub path: Option<String>,
    pub image: String,
    pub replicas: i32,
    pub autoscaling: bool,
    pub need_auth: bool,
    pub config: Option<String>,
    pub resources: Option<ResourceRequirements>,
    pub idle: bool,
}

impl Checked {
    /// The replicas the Deployment should run (0 when idle).
    pub fn wanted_replicas(&self) -> i32 {
        if self.idle { 0 } else { self.replicas }
    }

    /// Most replicas the autoscaler may run.
    pub fn max_replicas(&self) -> i32 {
        if self.autoscaling {
            (self.replicas * 3).max(1)
        } else {
            self.replicas
        }
    }
}

impl Spec {
    /// Checks the spec; the error is a sentence for the user.
    pub fn checked(&self) -> Result<Checked, String> {
        let image = self.image.as_deref().map(str::trim).unwrap_or_default();
        if image.is_empty() {
            return Err("spec.image is required".into());
        }
        let replicas = self.replicas.unwrap_or(1);
        if !(0..=MAX_REPLICAS).contains(&replicas) {
            return Err(format!(
                "spec.replicas must be between 0 and {MAX_REPLICAS}, not {replicas}"
            ));
        }
        for (field, value) in [("msName", &self.ms_name), ("fullName", &self.full_name)] {
            if let Some(value) = value
                && !is_dns_label(value)
            {
                return Err(format!(
                    "spec.{field} {value:?} must be a DNS label (lowercase letters, digits and '-')"
                ));
            }
        }
        Ok(Checked {
            ms_name: self.ms_name.clone(),
            full_name: self.full_name.clone(),
            version: self.version.clone(),
            path: self.path.clone(),
            image: image.to_owned(),
            replicas,
            autoscaling: self.autoscaling,
            need_auth: self.need_auth,
            config: self.config.clone(),
            resources: self.resource_requirements.clone(),
            idle: self.idle,
        })
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn crd_is_generated_from_the_types() {
        use kube::CustomResourceExt;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/crds/custom.ops_microservicedeploys.yaml"
        );
        trellis_sdk::crd::assert_current(&super::MicroServiceDeploy::crd(), path);
    }
}
