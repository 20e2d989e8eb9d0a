//! The `MicroServiceDeploy` custom resource as users write it, and the
//! checks that turn its spec into settled values.

use serde::Deserialize;
use trellis_sdk::k8s_openapi::api::core::v1::ResourceRequirements;

/// Largest `replicas` accepted.
const MAX_REPLICAS: i32 = 1000;

/// A `MicroServiceDeploy` (only what the plugin reads).
#[derive(Debug, Deserialize)]
pub struct MicroServiceDeploy {
    /// The instance's desired state.
    pub spec: Spec,
}

/// The spec, field names as in the CRD users already have.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub ms_name: Option<String>,
    pub full_name: Option<String>,
    pub version: Option<String>,
    pub path: Option<String>,
    pub image: Option<String>,
    pub replicas: Option<i32>,
    pub autoscaling: bool,
    pub need_auth: bool,
    pub config: Option<String>,
    pub resource_requirements: Option<ResourceRequirements>,
    pub idle: bool,
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
