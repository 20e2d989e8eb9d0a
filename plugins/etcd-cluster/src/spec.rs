//! The `EtcdCluster` custom resource as etcd-operator users write it, and
//! the checks that turn it into settled values.

use serde::Deserialize;

/// Most members accepted: beyond this, writes slow down for no gain.
pub const MAX_SIZE: i32 = 9;
/// Where etcd-operator pulled etcd from; tags are `v<version>`.
pub const DEFAULT_REPOSITORY: &str = "quay.io/coreos/etcd";
/// etcd-operator's default version.
pub const DEFAULT_VERSION: &str = "3.2.13";

/// An `EtcdCluster` (only what the plugin reads).
#[derive(Debug, Deserialize)]
pub struct EtcdCluster {
    pub spec: Spec,
    #[serde(default)]
    pub status: Option<ObservedStatus>,
}

/// The spec, field names as in etcd-operator's `v1beta2`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub size: i32,
    pub version: Option<String>,
    pub repository: Option<String>,
    #[serde(default)]
    pub paused: bool,
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
pub fn size_change_problem(old: &EtcdCluster, new: &Checked) -> Option<String> {
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
