//! The checks a registration's namespaced references share (a ConfigMap
//! module, an OCI module's pull Secret): a name and a namespace that are
//! valid object names, and a namespace a registration may refer to. A
//! tenant's ReconcilerPlugin refers to its own namespace only (filled in
//! when empty); a ClusterReconcilerPlugin names one.

use super::declared::Refusal;
use crate::controller::Identity;
use crate::runtime::{is_dns_label, is_dns_subdomain};

/// The reasons a reference's refusals give.
pub struct RefReasons {
    /// A name or namespace that is no valid one.
    pub invalid: &'static str,
    /// A tenant's reference to another namespace.
    pub outside: &'static str,
    /// A cluster registration's reference without a namespace.
    pub missing: &'static str,
}

/// Checks the reference `field` (`spec.module.configMap`, …) to `name` in
/// `namespace`, filling in a tenant's own namespace when empty.
pub fn check_namespaced(
    field: &str,
    name: &str,
    namespace: &mut String,
    tenant: Option<&Identity>,
    reasons: &RefReasons,
) -> Result<(), Refusal> {
    let bad = |what: &str, value: &str| {
        Err(Refusal::new(
            reasons.invalid,
            format!("{field}.{what} {value:?} is not a valid {what}"),
        ))
    };
    if !is_dns_subdomain(name) {
        return bad("name", name);
    }
    if !namespace.is_empty() && !is_dns_label(namespace) {
        return bad("namespace", namespace);
    }
    match tenant {
        Some(tenant) if namespace.is_empty() => *namespace = tenant.namespace.clone(),
        Some(tenant) if *namespace != tenant.namespace => {
            return Err(Refusal::new(
                reasons.outside,
                format!(
                    "{field}.namespace is {namespace}: a ReconcilerPlugin may refer only to its own namespace {}",
                    tenant.namespace
                ),
            ));
        }
        None if namespace.is_empty() => {
            return Err(Refusal::new(
                reasons.missing,
                format!("{field}.namespace is required in a ClusterReconcilerPlugin"),
            ));
        }
        _ => {}
    }
    Ok(())
}
