//! `ReconcilerPlugin` objects: a platform admin's registration of a module
//! in the plugins folder, overriding or narrowing what its `info` says
//! (kinds, config, limits) and pinning its digest.
//!
//! [`resolve`] turns one object into a [`Registration`] or a [`Refusal`]
//! whose reason goes on the object's `Ready` condition.

use super::folder::PluginFolder;
use crate::controller::Registration;
use crate::crd::ReconcilerPlugin;
use crate::runtime::{KindRef, Limits};

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

/// The module file a `ReconcilerPlugin` names, if any.
pub fn module_file(object: &ReconcilerPlugin) -> Option<&str> {
    object.spec.module.file.as_deref()
}

/// The registration a `ReconcilerPlugin` asks for, checked against its module.
pub fn resolve(object: &ReconcilerPlugin, folder: &PluginFolder, defaults: Limits) -> Result<Registration, Refusal> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let spec = &object.spec;
    let file = module_file(object).ok_or_else(|| {
        Refusal::new(
            "NoModuleSource",
            "spec.module.file must name a module in the host's plugins folder",
        )
    })?;
    let plugin = folder.get(file).map_err(|e| match folder.contains(file) {
        true => Refusal::new("ModuleInvalid", e),
        false => Refusal::new("ModuleNotFound", e),
    })?;
    if let Some(pin) = &spec.module.sha256
        && !pin.eq_ignore_ascii_case(plugin.digest())
    {
        return Err(Refusal::new(
            "DigestMismatch",
            format!(
                "{file} has sha256 {}, but spec.module.sha256 pins {pin}",
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
        name,
        source: format!(
            "ReconcilerPlugin {} (file {file})",
            object.metadata.name.as_deref().unwrap_or("")
        ),
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
