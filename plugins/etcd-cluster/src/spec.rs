//! The `EtcdCluster` custom resource as etcd-operator users write it, and
//! the checks that turn it into settled values.

use serde::{Deserialize, Serialize};

/// Most members accepted: beyond this, writes slow down for no gain.
pub const MAX_SIZE: i32 = 9;
/// Where etcd-operator pulled etcd from; tags are `v<version>`.
pub const DEFAULT_REPOSITORY: &str = "quay.io/coreos/etcd";
/// etcd-operator's default version.
pub const DEFAULT_VERSION: &str = "3.2.13";

/// An `EtcdCluster` as the plugin reads it.
#[derive(Debug, Deserialize)]
pub struct Parent {
    pub spec: Spec,
    #[serde(default)]
    pub status: Option<ObservedStatus>,
}

// The CRD, deploy/crds/etcd.database.coreos.com_etcdclusters.yaml, is
// generated from `Spec` and `Status` by kube's `CustomResource` derive, in
// tests only: `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-etcd-cluster crd`.

/// An etcd cluster of `size` members; field names as in etcd-operator's
/// `v1beta2`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::without_defaults))]
#[cfg_attr(
    test,
    kube(
        group = "etcd.database.coreos.com",
        version = "v1beta2",
        kind = "EtcdCluster",
        namespaced,
        status = "Status",
        shortname = "etcd",
        doc = "An etcd cluster: a StatefulSet of `size` members, their Services, bootstrap ConfigMap and a disruption budget keeping quorum",
        printcolumn = r#"{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}"#,
        printcolumn = r#"{"name": "Version", "type": "string", "jsonPath": ".spec.version"}"#,
        printcolumn = r#"{"name": "Current", "type": "string", "jsonPath": ".status.currentVersion"}"#,
        printcolumn = r#"{"name": "Ready", "type": "integer", "jsonPath": ".status.readyMembers"}"#,
        printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
pub struct Spec {
    /// How many members run. 0 and sizes above 9 are accepted by the API
    /// server and explained by the plugin in the status (Ready=False,
    /// InvalidSpec).
    #[cfg_attr(test, schemars(range(min = 0)))]
    pub size: i32,
    /// The etcd release, e.g. 3.5.17 (default 3.2.13).
    #[cfg_attr(test, schemars(regex(pattern = r"^v?[0-9]+\.[0-9]+\.[0-9]+$")))]
    pub version: Option<String>,
    /// Where the image comes from; its tag is `v<version>`.
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub repository: Option<String>,
    /// Holds the cluster as it is.
    #[serde(default)]
    pub paused: bool,
}

/// What the plugin reports, as etcd-operator did.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
pub struct Status {
    /// Creating, Scaling, Upgrading, Running or a held phase.
    pub phase: String,
    /// The members the StatefulSet runs.
    pub size: i32,
    /// The members that are ready.
    pub ready_members: i32,
    /// The version every member runs, once they all do.
    pub current_version: Option<String>,
    /// The version the spec asks for.
    pub target_version: String,
    /// The Service clients connect to.
    pub service_name: String,
    pub client_port: i32,
    /// What the spec allows but is worth saying (an even size).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What an earlier reconcile wrote to the status, read back.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedStatus {
    pub current_version: Option<String>,
    /// The members the StatefulSet runs.
    pub size: Option<i32>,
    /// The members that are ready.
    pub ready_members: Option<i32>,
}

impl ObservedStatus {
    /// Healthy: the status reports at least one member and every member it
    /// reports ready (`readyMembers == size`). The `Ready` condition is not
    /// the test: it is also `False` while a healthy cluster moves towards its
    /// spec (a step of a resize, an upgrade), which is no reason to hold it.
    pub fn healthy(&self) -> bool {
        matches!((self.size, self.ready_members), (Some(size), Some(ready)) if size >= 1 && ready == size)
    }

    /// `2/3 members ready`, or that no reconcile has reported any yet.
    fn members(&self) -> String {
        match (self.size, self.ready_members) {
            (Some(size), Some(ready)) => format!("{ready}/{size} members ready"),
            _ => "no members reported yet".to_owned(),
        }
    }
}

/// The refusal of an update of `spec.size` from `old` to `new` by more than
/// one member while the stored status says the cluster is not healthy (a
/// missing status counts as not healthy).
pub fn size_change_problem(old: &Parent, new: &Checked) -> Option<String> {
    let status = old.status.as_ref();
    if (new.size - old.spec.size).abs() <= 1 || status.is_some_and(ObservedStatus::healthy) {
        return None;
    }
    Some(format!(
        "spec.size may change by one member at a time while the cluster is not healthy ({} → {}; {})",
        old.spec.size,
        new.size,
        status.map_or_else(|| "no status yet".to_owned(), ObservedStatus::members),
    ))
}

/// A spec that passed the checks.
#[derive(Debug)]
pub struct Checked {
    pub size: i32,
    /// Without a leading `v`, e.g. `3.2.13`.
    pub version: String,
    pub repository: String,
    pub paused: bool,
    /// Allowed but worth saying (an even size).
    pub warnings: Vec<String>,
}

impl Checked {
    /// The etcd image for the version.
    pub fn image(&self) -> String {
        format!("{}:v{}", self.repository, self.version)
    }

    /// Members needed for a quorum.
    pub fn quorum(&self) -> i32 {
        self.size / 2 + 1
    }
}

impl Spec {
    /// Checks the spec; the error is a sentence for the status.
    pub fn checked(&self) -> Result<Checked, String> {
        if self.size < 1 {
            return Err(format!("size must be at least 1, not {}", self.size));
        }
        if self.size > MAX_SIZE {
            return Err(format!(
                "size {} is above {MAX_SIZE}: larger etcd clusters are slower, not safer",
                self.size
            ));
        }
        let version = self
            .version
            .as_deref()
            .unwrap_or(DEFAULT_VERSION)
            .trim_start_matches('v');
        let parts: Vec<&str> = version.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!("version {version:?} is not a release like 3.5.17"));
        }
        let mut warnings = Vec::new();
        if self.size % 2 == 0 {
            warnings.push(format!(
                "size {} is even: it tolerates no more failures than size {}",
                self.size,
                self.size - 1
            ));
        }
        Ok(Checked {
            size: self.size,
            version: version.to_owned(),
            repository: self.repository.clone().unwrap_or_else(|| DEFAULT_REPOSITORY.to_owned()),
            paused: self.paused,
            warnings,
        })
    }
}
