//! Identities: every registration's controller acts as a ServiceAccount of
//! its own (Kubernetes impersonation) for every read and write its plugin
//! causes, so that ServiceAccount's RBAC, never the host's, bounds what the
//! plugin's output can do.
//!
//! - A tenant's `ReconcilerPlugin` acts as the ServiceAccount it names, in
//!   its own namespace, and sees that namespace only.
//! - A `ClusterReconcilerPlugin` acts as its `spec.serviceAccountRef`, or
//!   else as `trellis-plugin-<name>` of the host's namespace.
//! - A file of the plugins folder acts as `trellis-plugin-<name>` of the
//!   host's namespace (`deploy/` ships one per bundled plugin).
//!
//! Before a controller starts, [`check_identity`] makes sure the
//! ServiceAccount exists and may list and watch every kind the plugin
//! touches; a registration that fails is refused with the reason instead of
//! a watch that never fills.

use super::{ControllerError, ServedKind, Shared};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

/// The annotation by which a ServiceAccount names the tenant registrations
/// (ReconcilerPlugins of its namespace, comma-separated, or `*`) that may
/// act as it, when the host requires consent (`--service-account-consent`).
pub const ALLOWED_REGISTRATIONS: &str = "trellis.dev/allowed-registrations";

/// The prefix of a plugin's own ServiceAccount: `trellis-plugin-<name>`.
pub const PLUGIN_ACCOUNT_PREFIX: &str = "trellis-plugin-";

/// A ServiceAccount a registration acts as.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
}

impl Identity {
    /// The Kubernetes user name of the ServiceAccount.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.service_account)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccount {}/{}", self.namespace, self.service_account)
    }
}

/// Whom the plugins without a ServiceAccount of their own act as: files of
/// the plugins folder, and `ClusterReconcilerPlugin`s naming none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginAccounts {
    /// `trellis-plugin-<name>` of this namespace (the host's): what
    /// `trellis run` does.
    OwnServiceAccounts { namespace: String },
    /// The host's own client. Only for embedding the host where its client
    /// already is the identity the plugins should have (tests that are not
    /// about rights); `trellis run` never does this.
    HostClient,
}

impl PluginAccounts {
    /// The identity of the plugin registered as `name`, or `None` to act
    /// with the host's client.
    pub fn for_plugin(&self, name: &str) -> Option<Identity> {
        match self {
            Self::OwnServiceAccounts { namespace } => Some(Identity {
                namespace: namespace.clone(),
                service_account: format!("{PLUGIN_ACCOUNT_PREFIX}{name}"),
            }),
            Self::HostClient => None,
        }
    }
}

impl Shared {
    /// This host's settings for a controller acting as `identity`, watching
    /// `namespace` (a tenant's) or what the host watches.
    /// A client that acts as `identity` (impersonating its ServiceAccount).
    pub fn client_as(&self, identity: &Identity) -> Result<kube::Client, ControllerError> {
        let mut config = self.client_config.clone().ok_or(ControllerError::NoImpersonation)?;
        // The API server adds the ServiceAccount's groups itself.
        config.auth_info.impersonate = Some(identity.user());
        config.auth_info.impersonate_groups = None;
        kube::Client::try_from(config).map_err(ControllerError::Client)
    }

    pub(super) fn acting_as(&self, identity: &Identity, namespace: Option<&str>) -> Result<Shared, ControllerError> {
        Ok(Shared {
            client: self.client_as(identity)?,
            namespace: namespace.map(str::to_owned).or_else(|| self.namespace.clone()),
            ..self.clone()
        })
    }
}

/// Checks, before anything is watched, that `identity` exists (read with the
/// host's client, `host`), that it consents to `consent_of` (a tenant
/// registration's name, when the host requires consent), and that it may
/// list and watch every kind the plugin touches where the controller
/// (`acting`) watches. A tenant's plugin only touches namespaced kinds.
pub(super) async fn check_identity(
    host: &Shared,
    acting: &Shared,
    identity: &Identity,
    tenant: bool,
    consent_of: Option<&str>,
    kinds: &[&ServedKind],
) -> Result<(), ControllerError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(host.client.clone(), &identity.namespace);
    let account = match accounts.get_opt(&identity.service_account).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            return Err(ControllerError::NoServiceAccount {
                identity: identity.clone(),
            });
        }
        Err(e) => return Err(ControllerError::Client(e)),
    };
    if let Some(registration) = consent_of
        && !consents(&account, registration)
    {
        return Err(ControllerError::NoConsent {
            identity: identity.clone(),
            registration: registration.to_owned(),
        });
    }
    for kind in kinds {
        if tenant && !kind.namespaced {
            return Err(ControllerError::ClusterScopedForTenant {
                kind: kind.kind.clone(),
            });
        }
        let namespace = if kind.namespaced {
            acting.namespace.clone()
        } else {
            None
        };
        for verb in ["list", "watch"] {
            if !may(acting, kind, verb, namespace.as_deref(), identity).await? {
                return Err(ControllerError::Forbidden {
                    user: identity.user(),
                    verb,
                    kind: kind.kind.clone(),
                    place: namespace
                        .as_ref()
                        .map_or_else(|| "cluster-wide".to_owned(), |ns| format!("in namespace {ns}")),
                });
            }
        }
    }
    Ok(())
}

/// Whether the ServiceAccount's [`ALLOWED_REGISTRATIONS`] names `registration` (or is `*`).
fn consents(account: &ServiceAccount, registration: &str) -> bool {
    account
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALLOWED_REGISTRATIONS))
        .is_some_and(|names| names.split(',').map(str::trim).any(|n| n == registration || n == "*"))
}

/// Whether the identity `acting` impersonates may `verb` the kind in
/// `namespace` (all namespaces when `None`): a SelfSubjectAccessReview made
/// as that identity, which every authenticated user may create.
async fn may(
    acting: &Shared,
    kind: &ServedKind,
    verb: &str,
    namespace: Option<&str>,
    identity: &Identity,
) -> Result<bool, ControllerError> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(kind.resource.group.clone()),
                resource: Some(kind.resource.plural.clone()),
                verb: Some(verb.to_owned()),
                namespace: namespace.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(acting.client.clone());
    match reviews.create(&PostParams::default(), &review).await {
        Ok(answer) => Ok(answer.status.is_some_and(|s| s.allowed)),
        // The impersonation itself was refused: the host may not act as it.
        Err(kube::Error::Api(status)) if status.code == 403 => Err(ControllerError::CannotImpersonate {
            identity: identity.clone(),
            message: status.message,
        }),
        Err(e) => Err(ControllerError::Client(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(annotation: Option<&str>) -> ServiceAccount {
        let mut account = ServiceAccount::default();
        if let Some(value) = annotation {
            account.metadata.annotations = Some([(ALLOWED_REGISTRATIONS.to_owned(), value.to_owned())].into());
        }
        account
    }

    #[test]
    fn a_service_account_consents_only_to_the_registrations_it_names() {
        assert!(!consents(&account(None), "greeter"));
        assert!(!consents(&account(Some("other")), "greeter"));
        assert!(!consents(&account(Some("greeter-v2")), "greeter"));
        assert!(consents(&account(Some("other, greeter")), "greeter"));
        assert!(consents(&account(Some("*")), "greeter"));
    }
}
