//! Tenants: a namespaced `ReconcilerPlugin`'s controller acts as the
//! tenant's ServiceAccount (Kubernetes impersonation) for every read and
//! write its plugin causes, confined to the tenant's namespace, so the
//! tenant's own RBAC bounds what the plugin's output can do.

use super::{ControllerError, ServedKind, Shared};
use kube::api::{Api, DynamicObject, ListParams};

/// The namespace and identity of a tenant's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub namespace: String,
    /// A ServiceAccount of `namespace`.
    pub service_account: String,
}

impl Tenant {
    /// The Kubernetes user name of the ServiceAccount.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.service_account)
    }
}

impl Shared {
    /// This host's settings for a tenant's controller: a client acting as
    /// the tenant's ServiceAccount, watching only its namespace.
    pub(super) fn acting_as(&self, tenant: &Tenant) -> Result<Shared, ControllerError> {
        let mut config = self.client_config.clone().ok_or(ControllerError::NoImpersonation)?;
        // The API server adds the ServiceAccount's groups itself.
        config.auth_info.impersonate = Some(tenant.user());
        config.auth_info.impersonate_groups = None;
        let client = kube::Client::try_from(config).map_err(ControllerError::Client)?;
        Ok(Shared {
            client,
            namespace: Some(tenant.namespace.clone()),
            ..self.clone()
        })
    }
}

/// Checks, before anything is watched, that the tenant's ServiceAccount may
/// list every kind the plugin touches in its namespace: a kind it may not
/// read is refused up front (with the API's message) instead of a watch
/// that never fills.
pub(super) async fn check_access(
    shared: &Shared,
    tenant: &Tenant,
    kinds: &[&ServedKind],
) -> Result<(), ControllerError> {
    for kind in kinds {
        if !kind.namespaced {
            return Err(ControllerError::ClusterScopedForTenant {
                kind: kind.kind.clone(),
            });
        }
        let api: Api<DynamicObject> = Api::namespaced_with(shared.client.clone(), &tenant.namespace, &kind.resource);
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(ControllerError::Forbidden {
                    user: tenant.user(),
                    kind: kind.kind.clone(),
                    namespace: tenant.namespace.clone(),
                });
            }
            Err(e) => return Err(ControllerError::Client(e)),
        }
    }
    Ok(())
}
