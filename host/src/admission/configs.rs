//! The webhook configurations the host keeps, one
//! `ValidatingWebhookConfiguration` and/or `MutatingWebhookConfiguration`
//! per registration whose plugin asks for admission hooks (the mutating one
//! also holds the hook defaulting new objects of its `default-related`
//! kinds, which never blocks them: failurePolicy Ignore): planned here
//! from the registration alone (pure), applied and pruned by
//! [`super::Webhooks`].

use crate::crd::FailurePolicy;
use crate::runtime::AdmissionHooks;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use std::collections::BTreeMap;

/// The label on every configuration the host keeps (and prunes).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "trellis");
/// The label naming the registration a configuration is for.
pub const REGISTRATION_LABEL: &str = "trellis.dev/registration";
/// How long the API server waits for an answer. The host answers well
/// before: see [`super::review::ANSWER_DEADLINE`].
pub const TIMEOUT_SECONDS: i32 = 10;
/// How long the API server waits for the `default-related` hook before it
/// admits the object unchanged.
pub const RELATED_TIMEOUT_SECONDS: i32 = 5;

/// Where the API server reaches the host's webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A base URL (`https://127.0.0.1:9443`): the host runs outside the
    /// cluster (a local control plane).
    Url(String),
    /// The host's Service, in cluster.
    Service { namespace: String, name: String, port: i32 },
}

/// How the API server reaches `path` of the host's webhooks.
pub fn client_config(endpoint: &Endpoint, path: &str, ca_bundle: &str) -> WebhookClientConfig {
    endpoint.client_config(path, ca_bundle)
}

impl Endpoint {
    fn client_config(&self, path: &str, ca_bundle: &str) -> WebhookClientConfig {
        let ca_bundle = Some(ByteString(ca_bundle.as_bytes().to_vec()));
        match self {
            Self::Url(base) => WebhookClientConfig {
                url: Some(format!("{}{path}", base.trim_end_matches('/'))),
                ca_bundle,
                service: None,
            },
            Self::Service { namespace, name, port } => WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(path.to_owned()),
                    port: Some(*port),
                }),
                ca_bundle,
                url: None,
            },
        }
    }
}

/// What a registration's webhooks are planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPlan {
    /// The registration's name (a label value, DNS-safe).
    pub registration: String,
    /// The parent kind's group, version and plural.
    pub group: String,
    pub version: String,
    pub plural: String,
    /// Whether parents live in namespaces.
    pub namespaced: bool,
    /// The hooks the plugin asks for.
    pub hooks: AdmissionHooks,
    /// What the API server does when the host cannot be reached.
    pub failure_policy: FailurePolicy,
    /// The only namespace whose objects it sees (a tenant's, or the host's
    /// watched namespace).
    pub namespace: Option<String>,
    /// The related kinds whose new objects the plugin fills in.
    pub default_related: Vec<RelatedRule>,
}

/// A related kind of `default-related`, as a webhook rule names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedRule {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespaced: bool,
}

/// Namespaces the `default-related` hook of a cluster-wide registration
/// leaves alone: the cluster's own.
const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// The name of both configurations of a registration.
pub fn config_name(registration: &str) -> String {
    format!("trellis-{registration}")
}

/// The path of a registration's hook (`/validate/<registration>`).
pub fn path(hook: &str, registration: &str) -> String {
    format!("/{hook}/{registration}")
}

impl WebhookPlan {
    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(config_name(&self.registration)),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
                (REGISTRATION_LABEL.to_owned(), self.registration.clone()),
            ])),
            ..Default::default()
        }
    }

    fn rules(&self) -> Vec<RuleWithOperations> {
        vec![RuleWithOperations {
            api_groups: Some(vec![self.group.clone()]),
            api_versions: Some(vec![self.version.clone()]),
            resources: Some(vec![self.plural.clone()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            scope: Some(if self.namespaced { "Namespaced" } else { "Cluster" }.into()),
        }]
    }

    fn namespace_selector(&self) -> Option<LabelSelector> {
        self.namespace.as_ref().map(|ns| LabelSelector {
            match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.clone())])),
            match_expressions: None,
        })
    }

    /// The `default-related` hook's namespaces: the one it is confined to,
    /// or every one but the cluster's own.
    fn related_namespace_selector(&self) -> LabelSelector {
        self.namespace_selector().unwrap_or_else(|| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(SYSTEM_NAMESPACES.iter().map(|ns| (*ns).to_owned()).collect()),
            }]),
        })
    }

    /// The hook filling in new objects of the `default-related` kinds.
    fn related_hook(&self, endpoint: &Endpoint, ca_bundle: &str) -> Option<MutatingWebhook> {
        if self.default_related.is_empty() {
            return None;
        }
        let rules = self
            .default_related
            .iter()
            .map(|r| RuleWithOperations {
                api_groups: Some(vec![r.group.clone()]),
                api_versions: Some(vec![r.version.clone()]),
                resources: Some(vec![r.plural.clone()]),
                operations: Some(vec!["CREATE".into()]),
                scope: Some(if r.namespaced { "Namespaced" } else { "Cluster" }.into()),
            })
            .collect();
        Some(MutatingWebhook {
            name: self.webhook_name("mutate-related"),
            admission_review_versions: vec!["v1".into()],
            client_config: endpoint.client_config(&path("mutate-related", &self.registration), ca_bundle),
            // Objects of others: a failing plugin never blocks them.
            failure_policy: Some(FailurePolicy::Ignore.as_str().into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(self.related_namespace_selector()),
            rules: Some(rules),
            side_effects: "None".into(),
            timeout_seconds: Some(RELATED_TIMEOUT_SECONDS),
            reinvocation_policy: Some("Never".into()),
            ..Default::default()
        })
    }

    /// The webhook's name: fully qualified, as the API requires.
    fn webhook_name(&self, hook: &str) -> String {
        format!("{hook}.{}.trellis.dev", self.registration)
    }

    /// The validating configuration, if the plugin validates.
    pub fn validating(&self, endpoint: &Endpoint, ca_bundle: &str) -> Option<ValidatingWebhookConfiguration> {
        self.hooks.validate.then(|| ValidatingWebhookConfiguration {
            metadata: self.metadata(),
            webhooks: Some(vec![ValidatingWebhook {
                name: self.webhook_name("validate"),
                admission_review_versions: vec!["v1".into()],
                client_config: endpoint.client_config(&path("validate", &self.registration), ca_bundle),
                failure_policy: Some(self.failure_policy.as_str().into()),
                match_policy: Some("Equivalent".into()),
                namespace_selector: self.namespace_selector(),
                rules: Some(self.rules()),
                side_effects: "None".into(),
                timeout_seconds: Some(TIMEOUT_SECONDS),
                ..Default::default()
            }]),
        })
    }

    /// The mutating configuration, if the plugin defaults its parents or
    /// new objects of related kinds.
    pub fn mutating(&self, endpoint: &Endpoint, ca_bundle: &str) -> Option<MutatingWebhookConfiguration> {
        let parent_hook = self.hooks.default.then(|| MutatingWebhook {
            name: self.webhook_name("mutate"),
            admission_review_versions: vec!["v1".into()],
            client_config: endpoint.client_config(&path("mutate", &self.registration), ca_bundle),
            failure_policy: Some(self.failure_policy.as_str().into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: self.namespace_selector(),
            rules: Some(self.rules()),
            side_effects: "None".into(),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            reinvocation_policy: Some("Never".into()),
            ..Default::default()
        });
        let webhooks: Vec<MutatingWebhook> = parent_hook
            .into_iter()
            .chain(self.related_hook(endpoint, ca_bundle))
            .collect();
        (!webhooks.is_empty()).then(|| MutatingWebhookConfiguration {
            metadata: self.metadata(),
            webhooks: Some(webhooks),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(hooks: AdmissionHooks, namespace: Option<&str>) -> WebhookPlan {
        WebhookPlan {
            registration: "team-a.daemons".into(),
            group: "apps.zhongmingmao.io".into(),
            version: "v1beta1".into(),
            plural: "mydaemonsets".into(),
            namespaced: true,
            hooks,
            failure_policy: FailurePolicy::Fail,
            namespace: namespace.map(str::to_owned),
            default_related: Vec::new(),
        }
    }

    #[test]
    fn default_related_kinds_get_a_create_only_hook_that_never_blocks() {
        let endpoint = Endpoint::Url("https://127.0.0.1:9443".into());
        let mut cluster_wide = plan(AdmissionHooks::default(), None);
        assert!(cluster_wide.mutating(&endpoint, "CA").is_none());
        cluster_wide.default_related = vec![RelatedRule {
            group: String::new(),
            version: "v1".into(),
            plural: "pods".into(),
            namespaced: true,
        }];
        let config = cluster_wide.mutating(&endpoint, "CA").unwrap();
        let hooks = config.webhooks.unwrap();
        assert_eq!(hooks.len(), 1, "no parent hook was asked for");
        let hook = &hooks[0];
        assert_eq!(hook.name, "mutate-related.team-a.daemons.trellis.dev");
        assert_eq!(
            hook.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/mutate-related/team-a.daemons")
        );
        assert_eq!(
            hook.failure_policy.as_deref(),
            Some("Ignore"),
            "whatever the registration's policy"
        );
        let rule = &hook.rules.as_ref().unwrap()[0];
        assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_owned()][..]));
        assert_eq!(rule.resources.as_deref(), Some(&["pods".to_owned()][..]));
        let spared = &hook
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()[0];
        assert_eq!(spared.operator, "NotIn");
        assert!(spared.values.as_ref().unwrap().contains(&"kube-system".to_owned()));

        let mut tenant = cluster_wide.clone();
        tenant.namespace = Some("team-a".into());
        tenant.hooks.default = true;
        let hooks = tenant.mutating(&endpoint, "CA").unwrap().webhooks.unwrap();
        assert_eq!(hooks.len(), 2, "the parent's hook and the related one");
        let selector = hooks[1]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(selector["kubernetes.io/metadata.name"], "team-a");
    }

    #[test]
    fn only_the_hooks_asked_for_get_a_configuration() {
        let endpoint = Endpoint::Url("https://127.0.0.1:9443/".into());
        let none = plan(AdmissionHooks::default(), None);
        assert!(none.validating(&endpoint, "CA").is_none() && none.mutating(&endpoint, "CA").is_none());
        let validate = plan(
            AdmissionHooks {
                validate: true,
                default: false,
            },
            None,
        );
        assert!(validate.validating(&endpoint, "CA").is_some() && validate.mutating(&endpoint, "CA").is_none());
    }

    #[test]
    fn a_validating_configuration_targets_the_parent_kind_on_create_and_update() {
        let endpoint = Endpoint::Url("https://127.0.0.1:9443/".into());
        let config = plan(
            AdmissionHooks {
                validate: true,
                default: true,
            },
            None,
        )
        .validating(&endpoint, "CA")
        .unwrap();
        assert_eq!(config.metadata.name.as_deref(), Some("trellis-team-a.daemons"));
        let hook = &config.webhooks.unwrap()[0];
        assert_eq!(hook.name, "validate.team-a.daemons.trellis.dev");
        assert_eq!(
            hook.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/validate/team-a.daemons")
        );
        assert_eq!(hook.client_config.ca_bundle.as_ref().unwrap().0, b"CA");
        assert_eq!(hook.side_effects, "None");
        assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
        let rule = &hook.rules.as_ref().unwrap()[0];
        assert_eq!(
            rule.operations.as_deref(),
            Some(&["CREATE".to_owned(), "UPDATE".to_owned()][..])
        );
        assert_eq!(rule.resources.as_deref(), Some(&["mydaemonsets".to_owned()][..]));
        assert!(hook.namespace_selector.is_none());
    }

    #[test]
    fn a_tenant_webhook_sees_only_its_namespace_and_in_cluster_goes_through_the_service() {
        let endpoint = Endpoint::Service {
            namespace: "trellis-system".into(),
            name: "trellis-webhook".into(),
            port: 443,
        };
        let config = plan(
            AdmissionHooks {
                validate: false,
                default: true,
            },
            Some("team-a"),
        )
        .mutating(&endpoint, "CA")
        .unwrap();
        let hook = &config.webhooks.unwrap()[0];
        let selector = hook.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(
            selector.get("kubernetes.io/metadata.name").map(String::as_str),
            Some("team-a")
        );
        let service = hook.client_config.service.as_ref().unwrap();
        assert_eq!(service.path.as_deref(), Some("/mutate/team-a.daemons"));
        assert!(hook.client_config.url.is_none());
    }
}
