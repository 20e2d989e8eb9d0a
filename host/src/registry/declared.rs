//! Registration objects: a platform admin's `ClusterReconcilerPlugin` or a
//! tenant's `ReconcilerPlugin`, read as one [`Declaration`], naming a module
//! and overriding or narrowing what its `info` says (kinds, config, limits)
//! and pinning its digest.
//!
//! [`resolve`] turns one declaration into a [`Registration`] or a
//! [`Refusal`] whose reason goes on the object's `Ready` condition.

use super::folder::PluginFolder;
use crate::controller::{Identity, PluginAccounts, Registration};
use crate::crd::{
    ClusterReconcilerPlugin, ConfigMapModule, OciModule, PluginSpec, ReconcilerPlugin, ReconcilerPluginStatus,
};
use crate::runtime::{KindRef, Limits, Plugin};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use sha2::{Digest, Sha256};

/// Longest label value: a tenant registration's name must fit in one.
const MAX_LABEL: usize = 63;

/// A registration object of either kind, as the registry needs it.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// `name` for a ClusterReconcilerPlugin, `namespace/name` for a
    /// ReconcilerPlugin: unique among declarations.
    pub key: String,
    /// The kind and name, for messages (`ReconcilerPlugin team-a/greeter`).
    pub title: String,
    /// The tenant of a namespaced ReconcilerPlugin: its namespace and the
    /// ServiceAccount it acts as.
    pub tenant: Option<Identity>,
    /// The ServiceAccount a ClusterReconcilerPlugin names to act as.
    pub service_account: Option<Identity>,
    pub spec: PluginSpec,
    pub generation: Option<i64>,
    pub status: Option<ReconcilerPluginStatus>,
    /// Where events about it go.
    pub object_ref: ObjectReference,
    /// The plugin name for field manager, labels and metrics.
    pub registration_name: String,
    /// The object is being deleted: its parents are released, not served.
    pub deleting: bool,
    /// Its finalizers, and its resourceVersion (to change them).
    pub finalizers: Vec<String>,
    pub resource_version: Option<String>,
}

impl From<&ClusterReconcilerPlugin> for Declaration {
    fn from(object: &ClusterReconcilerPlugin) -> Self {
        let name = object.metadata.name.clone().unwrap_or_default();
        Self {
            key: name.clone(),
            title: format!("ClusterReconcilerPlugin {name}"),
            tenant: None,
            service_account: object.spec.service_account_ref.as_ref().map(|r| Identity {
                namespace: r.namespace.clone(),
                service_account: r.name.clone(),
            }),
            spec: object.spec.plugin.clone(),
            generation: object.metadata.generation,
            status: object.status.clone(),
            object_ref: object.object_ref(&()),
            registration_name: name,
            deleting: object.metadata.deletion_timestamp.is_some(),
            finalizers: object.metadata.finalizers.clone().unwrap_or_default(),
            resource_version: object.metadata.resource_version.clone(),
        }
    }
}

impl From<&ReconcilerPlugin> for Declaration {
    fn from(object: &ReconcilerPlugin) -> Self {
        let name = object.metadata.name.clone().unwrap_or_default();
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        Self {
            key: format!("{namespace}/{name}"),
            title: format!("ReconcilerPlugin {namespace}/{name}"),
            registration_name: tenant_registration_name(&namespace, &name),
            tenant: Some(Identity {
                namespace,
                service_account: object.spec.service_account_name.clone(),
            }),
            service_account: None,
            spec: object.spec.plugin.clone(),
            generation: object.metadata.generation,
            status: object.status.clone(),
            object_ref: object.object_ref(&()),
            deleting: object.metadata.deletion_timestamp.is_some(),
            finalizers: object.metadata.finalizers.clone().unwrap_or_default(),
            resource_version: object.metadata.resource_version.clone(),
        }
    }
}

/// `namespace.name`, shortened with a hash to fit a label value.
fn tenant_registration_name(namespace: &str, name: &str) -> String {
    let full = format!("{namespace}.{name}");
    if full.len() <= MAX_LABEL {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", full[..MAX_LABEL - 13].trim_end_matches(['-', '.']))
}

/// Why a declaration does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// CamelCase reason for the `Ready=False` condition.
    pub reason: &'static str,
    /// What is wrong and how to mend it.
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The most a tenant's registration may ask for: the platform's ceilings
/// (`trellis run --tenant-max-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantCeilings {
    /// Memory of one instance, in MiB.
    pub memory_mib: usize,
    /// Deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Reconciles at once.
    pub concurrent_reconciles: u16,
}

impl Default for TenantCeilings {
    fn default() -> Self {
        Self {
            memory_mib: 256,
            timeout_ms: 10_000,
            concurrent_reconciles: 8,
        }
    }
}

impl TenantCeilings {
    /// A refusal when `limits` ask for more than a ceiling.
    fn check(&self, limits: &crate::crd::PluginLimits) -> Result<(), Refusal> {
        let above = |what: &str, asked: u64, ceiling: u64| {
            Refusal::new(
                "LimitAboveCeiling",
                format!("spec.limits.{what} is {asked}, above the platform's ceiling of {ceiling} for tenants"),
            )
        };
        if let Some(asked) = limits.memory_mib
            && asked > self.memory_mib
        {
            return Err(above("memoryMib", asked as u64, self.memory_mib as u64));
        }
        if let Some(asked) = limits.timeout_ms
            && asked > self.timeout_ms
        {
            return Err(above("timeoutMs", asked, self.timeout_ms));
        }
        if let Some(asked) = limits.max_concurrent_reconciles
            && asked > self.concurrent_reconciles
        {
            return Err(above(
                "maxConcurrentReconciles",
                u64::from(asked),
                u64::from(self.concurrent_reconciles),
            ));
        }
        Ok(())
    }

    /// The host's defaults, lowered to the ceilings where they are above.
    fn bound(&self, defaults: Limits) -> Limits {
        Limits {
            timeout: defaults.timeout.min(std::time::Duration::from_millis(self.timeout_ms)),
            memory_bytes: defaults.memory_bytes.min(self.memory_mib << 20),
            response_bytes: defaults.response_bytes,
        }
    }
}

/// Where a declaration's module comes from.
#[derive(Debug, Clone)]
pub enum ModuleRef {
    /// A file of the plugins folder.
    File(String),
    /// A ConfigMap key.
    ConfigMap(ConfigMapModule),
    /// An OCI artifact, its pull Secret's namespace filled in.
    Oci(OciModule),
}

impl std::fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(file) => write!(f, "file {file}"),
            Self::ConfigMap(module) => module.fmt(f),
            Self::Oci(module) => module.fmt(f),
        }
    }
}

/// The module source a declaration names: exactly one; for a tenant, a
/// ConfigMap of its own namespace or an OCI artifact pulled with a Secret
/// of its own namespace.
pub fn module_ref(declaration: &Declaration) -> Result<ModuleRef, Refusal> {
    let module = &declaration.spec.module;
    let origin = match (&module.file, &module.config_map, &module.oci) {
        (Some(file), None, None) => ModuleRef::File(file.clone()),
        (None, Some(config_map), None) => ModuleRef::ConfigMap(config_map.clone()),
        (None, None, Some(oci)) => {
            ModuleRef::Oci(super::oci::checked_module(oci.clone(), declaration.tenant.as_ref())?)
        }
        _ => {
            return Err(Refusal::new(
                "NoModuleSource",
                "spec.module must name exactly one of file (in the host's plugins folder), configMap and oci",
            ));
        }
    };
    match (origin, &declaration.tenant) {
        (ModuleRef::File(_), Some(_)) => Err(Refusal::new(
            "FileModuleNotAllowed",
            "a ReconcilerPlugin takes its module from a ConfigMap of its namespace (spec.module.configMap) \
             or an OCI artifact (spec.module.oci); files of the host's plugins folder are for ClusterReconcilerPlugins",
        )),
        (ModuleRef::ConfigMap(mut module), tenant) => {
            check_config_map_ref(&mut module, tenant.as_ref())?;
            Ok(ModuleRef::ConfigMap(module))
        }
        (origin, _) => Ok(origin),
    }
}

/// A ConfigMap reference that can be watched: a DNS-subdomain name, a
/// DNS-label namespace a registration may read (see [`super::refs`]), a
/// valid key. Checked before it reaches a field selector, where a bad name
/// would never list.
fn check_config_map_ref(module: &mut ConfigMapModule, tenant: Option<&Identity>) -> Result<(), Refusal> {
    const FIELD: &str = "spec.module.configMap";
    super::refs::check_namespaced(
        FIELD,
        &module.name,
        &mut module.namespace,
        tenant,
        &super::refs::RefReasons {
            invalid: "InvalidConfigMapRef",
            outside: "ModuleOutsideNamespace",
            missing: "NoModuleNamespace",
        },
    )?;
    let key_ok = !module.key.is_empty()
        && module.key.len() <= 253
        && module
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !key_ok {
        return Err(Refusal::new(
            "InvalidConfigMapRef",
            format!("{FIELD}.key {:?} is not a valid key", module.key),
        ));
    }
    Ok(())
}

/// The module file a declaration names, if any.
pub fn module_file(declaration: &Declaration) -> Option<String> {
    match module_ref(declaration) {
        Ok(ModuleRef::File(file)) => Some(file),
        _ => None,
    }
}

/// Whether a folder module may claim `parent` from its own `info`: only a
/// custom resource kind. A built-in kind (the core group, groups without a
/// dot, and `*.k8s.io` / `*.kubernetes.io`) exists in every cluster, often
/// in every namespace (`kube-root-ca.crt`, the `default` ServiceAccount), so
/// a dropped file would reconcile objects nobody made for it. Claiming one
/// takes an explicit `ClusterReconcilerPlugin` or `ReconcilerPlugin`.
pub fn folder_parent_allowed(parent: &KindRef) -> Result<(), Refusal> {
    let group = parent.group();
    let built_in = !group.contains('.')
        || group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io");
    if built_in {
        return Err(Refusal::new(
            "BuiltInParentKind",
            format!(
                "{parent} is a built-in kind: a file of the plugins folder may only reconcile custom resources; \
                 register it explicitly with a ClusterReconcilerPlugin (spec.module.file) or a ReconcilerPlugin"
            ),
        ));
    }
    Ok(())
}

/// The module of a file source, or why there is none.
pub fn file_module<'a>(folder: &'a PluginFolder, file: &str) -> Result<&'a Plugin, Refusal> {
    folder.get(file).map_err(|e| match folder.contains(file) {
        true => Refusal::new("ModuleInvalid", e),
        false => Refusal::new("ModuleNotFound", e),
    })
}

/// The host's settings a declaration is resolved with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Limits of a call the declaration does not set.
    pub limits: Limits,
    /// Whom plugins without a ServiceAccount of their own act as.
    pub accounts: PluginAccounts,
    /// The most a tenant may ask for.
    pub ceilings: TenantCeilings,
    /// How registries are reached.
    pub oci: super::oci::OciSettings,
}

/// The registration a declaration asks for, checked against its module
/// (`plugin`, loaded from `origin`); it acts as the tenant's or the named
/// ServiceAccount, else as `settings.accounts` says.
pub fn resolve(
    declaration: &Declaration,
    plugin: Result<&Plugin, Refusal>,
    origin: &ModuleRef,
    settings: &Settings,
) -> Result<Registration, Refusal> {
    let spec = &declaration.spec;
    let defaults = match &declaration.tenant {
        Some(_) => {
            settings.ceilings.check(&spec.limits)?;
            settings.ceilings.bound(settings.limits)
        }
        None => settings.limits,
    };
    let plugin = plugin?;
    if let Some(pin) = &spec.module.sha256
        && !pin.eq_ignore_ascii_case(plugin.digest())
    {
        return Err(Refusal::new(
            "DigestMismatch",
            format!(
                "{origin} has sha256 {}, but spec.module.sha256 pins {pin}",
                plugin.digest()
            ),
        ));
    }
    let info = plugin.info();
    if let Some(parent) = &spec.parent
        && *parent != info.parent
    {
        return Err(Refusal::new(
            "ParentMismatch",
            format!(
                "spec.parent is {parent} but the module {} reconciles {}",
                info.name, info.parent
            ),
        ));
    }
    let children = narrowed(spec.children.as_ref(), &info.children, "ChildNotDeclared", "children")?;
    let related = narrowed(
        spec.related.as_ref(),
        &info.related,
        "RelatedNotDeclared",
        "related kinds",
    )?;
    Ok(Registration {
        name: declaration.registration_name.clone(),
        source: format!("{} ({origin})", declaration.title),
        declaration: Some(declaration.key.clone()),
        identity: identity_of(declaration, &settings.accounts),
        tenant_namespace: declaration.tenant.as_ref().map(|t| t.namespace.clone()),
        max_concurrent_reconciles: spec.limits.max_concurrent_reconciles,
        plugin: plugin.with_limits(spec.limits.over(defaults)),
        artifact: None,
        parent: info.parent.clone(),
        children,
        related,
        config: spec.config.clone(),
        finalizer: info.finalizer,
        failure_policy: spec.admission.as_ref().map(|a| a.failure_policy).unwrap_or_default(),
    })
}

/// Whom a declaration's plugin acts as: the tenant's ServiceAccount, the one
/// a ClusterReconcilerPlugin names, else its own (`accounts`).
pub fn identity_of(declaration: &Declaration, accounts: &PluginAccounts) -> Option<Identity> {
    declaration
        .tenant
        .clone()
        .or_else(|| declaration.service_account.clone())
        .or_else(|| accounts.for_plugin(&declaration.registration_name))
}

/// `wanted` if every kind in it is one the module declares, else a refusal.
fn narrowed(
    wanted: Option<&Vec<KindRef>>,
    declared: &[KindRef],
    reason: &'static str,
    what: &str,
) -> Result<Vec<KindRef>, Refusal> {
    let Some(wanted) = wanted else {
        return Ok(declared.to_vec());
    };
    if let Some(extra) = wanted.iter().find(|k| !declared.contains(k)) {
        let listed: Vec<String> = declared.iter().map(ToString::to_string).collect();
        return Err(Refusal::new(
            reason,
            format!(
                "{extra} is not among the {what} the module declares ({}); a registration may only narrow them",
                listed.join(", ")
            ),
        ));
    }
    let mut distinct: Vec<KindRef> = Vec::with_capacity(wanted.len());
    for kind in wanted {
        if !distinct.contains(kind) {
            distinct.push(kind.clone());
        }
    }
    Ok(distinct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_refs_are_checked_before_any_watch() {
        let module = |namespace: &str, name: &str, key: &str| ConfigMapModule {
            namespace: namespace.into(),
            name: name.into(),
            key: key.into(),
        };
        let tenant = Identity {
            namespace: "team-a".into(),
            service_account: "plugins".into(),
        };
        assert_eq!(
            check_config_map_ref(&mut module("team-a", "greeter.v1", "module.wasm"), None),
            Ok(())
        );
        let mut own = module("", "greeter", "module.wasm");
        assert_eq!(check_config_map_ref(&mut own, Some(&tenant)), Ok(()));
        assert_eq!(own.namespace, "team-a", "a tenant's own namespace is filled in");
        let mut elsewhere = module("team-b", "greeter", "module.wasm");
        assert_eq!(
            check_config_map_ref(&mut elsewhere, Some(&tenant)).unwrap_err().reason,
            "ModuleOutsideNamespace"
        );
        assert_eq!(
            check_config_map_ref(&mut module("", "greeter", "module.wasm"), None)
                .unwrap_err()
                .reason,
            "NoModuleNamespace"
        );
        for bad in [
            module("team-a", "Bad,Name", "module.wasm"),
            module("team-a", "a=b", "module.wasm"),
            module("team_a", "greeter", "module.wasm"),
            module("team-a", "greeter", "a/b"),
        ] {
            assert_eq!(
                check_config_map_ref(&mut bad.clone(), None).unwrap_err().reason,
                "InvalidConfigMapRef",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_folder_module_may_claim_only_custom_resource_kinds() {
        for (api_version, kind) in [
            ("v1", "ConfigMap"),
            ("v1", "Namespace"),
            ("apps/v1", "Deployment"),
            ("batch/v1", "Job"),
            ("networking.k8s.io/v1", "Ingress"),
            ("gateway.networking.k8s.io/v1", "Gateway"),
            ("metrics.kubernetes.io/v1beta1", "PodMetrics"),
        ] {
            let refusal = folder_parent_allowed(&KindRef::new(api_version, kind)).unwrap_err();
            assert_eq!(refusal.reason, "BuiltInParentKind", "{api_version} {kind}");
        }
        for (api_version, kind) in [
            ("custom.ops/v1", "MicroServiceDeploy"),
            ("etcd.database.coreos.com/v1beta2", "EtcdCluster"),
            ("monitoring.coreos.com/v1", "Prometheus"),
        ] {
            assert_eq!(folder_parent_allowed(&KindRef::new(api_version, kind)), Ok(()));
        }
    }

    #[test]
    fn a_cluster_registration_acts_as_its_service_account_ref_else_its_own() {
        let declaration = |service_account: Option<Identity>| Declaration {
            key: "greeter".into(),
            title: "ClusterReconcilerPlugin greeter".into(),
            tenant: None,
            service_account,
            spec: PluginSpec::default(),
            generation: None,
            status: None,
            object_ref: ObjectReference::default(),
            registration_name: "greeter".into(),
            deleting: false,
            finalizers: Vec::new(),
            resource_version: None,
        };
        let accounts = PluginAccounts::OwnServiceAccounts {
            namespace: "trellis-system".into(),
        };
        let named = Identity {
            namespace: "platform".into(),
            service_account: "greeter-bot".into(),
        };
        let identity = |d: &Declaration| identity_of(d, &accounts);
        assert_eq!(identity(&declaration(Some(named.clone()))), Some(named));
        assert_eq!(
            identity(&declaration(None)).map(|i| i.user()),
            Some("system:serviceaccount:trellis-system:trellis-plugin-greeter".to_owned())
        );
        assert_eq!(identity_of(&declaration(None), &PluginAccounts::HostClient), None);
    }
}
