//! Whether a micro-service instance gets its ResourceQuota.
//!
//! A ResourceQuota has no label selector: it governs every pod of its
//! namespace. So the quota from `resourceRequirements` exists only in a
//! namespace dedicated to the instance, one whose Namespace object carries
//! the label [`DEDICATED_TO`] with the instance's name. Everywhere else
//! there is no quota (and the `Quota` condition says why), so other
//! workloads, and other MicroServiceDeploys sharing the namespace, are never
//! refused because of this instance. The Namespace is a related object; a
//! registration that narrows it away (a tenant's, which may read only
//! namespaced kinds) gets no quota.

use trellis_sdk::Condition;
use trellis_sdk::Request;
use trellis_sdk::k8s_openapi::api::core::v1::Namespace;

/// The Namespace label that dedicates a namespace to one instance (its
/// `fullName`, else the parent's name).
pub const DEDICATED_TO: &str = "msdeploy.trellis.dev/dedicated-to";
/// The condition type that says whether the instance has its quota.
pub const CONDITION: &str = "Quota";

/// What the namespace allows, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The namespace is dedicated to this instance: the quota is its own.
    Dedicated,
    /// The namespace is shared (no label), so a quota would govern others.
    Shared,
    /// The namespace is dedicated to another instance.
    DedicatedToOther(String),
    /// The plugin cannot see the Namespace (narrowed registration).
    NotVisible,
}

impl Scope {
    /// The scope of the parent's namespace for `instance`.
    pub fn of(req: &Request, instance: &str) -> Self {
        let namespaces = req.related::<Namespace>();
        let Some(namespace) = namespaces
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(req.namespace()))
        else {
            return Self::NotVisible;
        };
        match namespace.metadata.labels.as_ref().and_then(|l| l.get(DEDICATED_TO)) {
            Some(owner) if owner == instance => Self::Dedicated,
            Some(owner) => Self::DedicatedToOther(owner.clone()),
            None => Self::Shared,
        }
    }

    /// The `Quota` condition for an instance with resource requirements.
    pub fn condition(&self, req: &Request, instance: &str) -> Condition {
        let namespace = req.namespace();
        match self {
            Self::Dedicated => Condition::new(
                CONDITION,
                true,
                "NamespaceDedicated",
                format!("ResourceQuota {instance}-quota governs namespace {namespace}, dedicated to this instance"),
            ),
            Self::Shared => Condition::new(
                CONDITION,
                false,
                "NamespaceShared",
                format!(
                    "no ResourceQuota: it would govern every pod of the shared namespace {namespace}; \
                     label the Namespace {DEDICATED_TO}={instance} to dedicate it to this instance"
                ),
            ),
            Self::DedicatedToOther(owner) => Condition::new(
                CONDITION,
                false,
                "NamespaceDedicatedToOther",
                format!(
                    "no ResourceQuota: namespace {namespace} is dedicated to {owner}, whose quota counts this instance's pods too"
                ),
            ),
            Self::NotVisible => Condition::new(
                CONDITION,
                false,
                "NamespaceNotVisible",
                format!("no ResourceQuota: the registration does not let the plugin read Namespace {namespace}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_sdk::serde_json::json;

    fn request(labels: Option<serde_json::Value>) -> Request {
        let req = Request::new(json!({"metadata": {"name": "p", "namespace": "team"}}));
        match labels {
            Some(labels) => req
                .with_related(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": labels}}))
                .with_related(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other", "labels": {DEDICATED_TO: "p"}}})),
            None => req,
        }
    }

    #[test]
    fn only_a_namespace_labelled_for_this_instance_is_dedicated() {
        assert_eq!(
            Scope::of(&request(Some(json!({DEDICATED_TO: "p"}))), "p"),
            Scope::Dedicated
        );
        assert_eq!(Scope::of(&request(Some(json!({}))), "p"), Scope::Shared);
        assert_eq!(
            Scope::of(&request(Some(json!({DEDICATED_TO: "q"}))), "p"),
            Scope::DedicatedToOther("q".into())
        );
        assert_eq!(Scope::of(&request(None), "p"), Scope::NotVisible);
    }
}
