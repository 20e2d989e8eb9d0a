//! `ReconcilerPlugin` objects: a platform admin's registration of a module
//! in the plugins folder, overriding or narrowing what its `info` says
//! (kinds, config, limits) and pinning its digest.
//!
//! [`resolve`] turns one object into a [`Registration`] or a [`Refusal`]
//! whose reason goes on the object's `Ready` condition.

use super::folder::PluginFolder;
use crate::controller::Registration;
use crate::crd::{ConfigMapModule, ReconcilerPlugin};
use crate::runtime::{KindRef, Limits, Plugin};

/// Why a `ReconcilerPlugin` does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// CamelCase reason for the `Ready=False` condition.
    pub reason: &'static str,
    /// What is wrong and how to mend it.
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Where a `ReconcilerPlugin`'s module comes from.
#[derive(Debug, Clone, Copy)]
pub enum ModuleRef<'a> {
    /// A file of the plugins folder.
    File(&'a str),
    /// A ConfigMap key.
    ConfigMap(&'a ConfigMapModule),
}

impl std::fmt::Display for ModuleRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(file) => write!(f, "file {file}"),
            Self::ConfigMap(module) => module.fmt(f),
        }
    }
}

/// The module source a `ReconcilerPlugin` names: exactly one.
pub fn module_ref(object: &ReconcilerPlugin) -> Result<ModuleRef<'_>, Refusal> {
    let module = &object.spec.module;
    match (&module.file, &module.config_map) {
        (Some(file), None) => Ok(ModuleRef::File(file)),
        (None, Some(config_map)) => Ok(ModuleRef::ConfigMap(config_map)),
        _ => Err(Refusal::new(
            "NoModuleSource",
            "spec.module must name exactly one of file (in the host's plugins folder) and configMap",
        )),
    }
}

/// The module file a `ReconcilerPlugin` names, if any.
pub fn module_file(object: &ReconcilerPlugin) -> Option<&str> {
    match module_ref(object) {
        Ok(ModuleRef::File(file)) => Some(file),
        _ => None,
    }
}

/// The module of a file source, or why there is none.
pub fn file_module<'a>(folder: &'a PluginFolder, file: &str) -> Result<&'a Plugin, Refusal> {
    folder.get(file).map_err(|e| match folder.contains(file) {
        true => Refusal::new("ModuleInvalid", e),
        false => Refusal::new("ModuleNotFound", e),
    })
}

/// The registration a `ReconcilerPlugin` asks for, checked against its
/// module (`plugin`, loaded from `origin`).
pub fn resolve(
    object: &ReconcilerPlugin,
    plugin: Result<&Plugin, Refusal>,
    origin: ModuleRef<'_>,
    defaults: Limits,
) -> Result<Registration, Refusal> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let spec = &object.spec;
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
        name: name.clone(),
        source: format!("ReconcilerPlugin {name} ({origin})"),
        plugin: plugin.with_limits(spec.limits.over(defaults)),
        parent: info.parent.clone(),
        children,
        related,
        config: spec.config.clone(),
        finalizer: info.finalizer,
    })
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
    Ok(wanted.clone())
}
