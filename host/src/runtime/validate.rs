//! Turns what a plugin returned into checked host types: every rule a
//! response must follow before anything of it is written to the cluster.

use super::bindings::v0_2::trellis::reconciler::types as wit;
use super::contract::{
    AdmissionHooks, Condition, Desired, DesiredChild, Event, KindRef, MAX_CHILDREN, MAX_EVENTS, MIN_REQUEUE, PluginInfo,
};
use super::error::{PluginFailure, RuntimeError};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::time::Duration;

/// Metadata fields the API server owns; a plugin that echoes an observed
/// child back must not send them (a stale `resourceVersion` would turn the
/// apply into a conflicting update).
const SERVER_OWNED_METADATA: &[&str] = &[
    "resourceVersion",
    "uid",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Checks a plugin's `info` and converts it.
pub(crate) fn plugin_info(module: &str, info: wit::PluginInfo) -> Result<PluginInfo, RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidInfo {
        module: module.to_owned(),
        reason,
    };
    if !is_dns_label(&info.name) {
        return Err(invalid(format!(
            "name {:?} is not a DNS label (lowercase letters, digits, '-', at most 63)",
            info.name
        )));
    }
    let kind = |k: wit::KindRef| KindRef {
        api_version: k.api_version,
        kind: k.kind,
    };
    let info = PluginInfo {
        name: info.name,
        version: info.version,
        parent: kind(info.parent),
        children: distinct(info.children.into_iter().map(kind)),
        related: distinct(info.related.into_iter().map(kind)),
        finalizer: info.finalizer,
        admission: AdmissionHooks {
            validate: info.admission.contains(wit::AdmissionHooks::VALIDATE),
            default: info.admission.contains(wit::AdmissionHooks::DEFAULT),
        },
        default_related: distinct(info.default_related.into_iter().map(kind)),
    };
    if let Some(stray) = info.default_related.iter().find(|k| !info.related.contains(k)) {
        return Err(invalid(format!(
            "default-related kind {stray} is not among the plugin's related kinds"
        )));
    }
    for k in std::iter::once(&info.parent).chain(&info.children).chain(&info.related) {
        if k.kind.is_empty() || k.version().is_empty() || !k.kind.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "{k:?} is not a valid kind (apiVersion group/version, CamelCase kind)"
            )));
        }
    }
    Ok(info)
}

/// The kinds in their order, each once: a kind listed twice would get two
/// watches and two caches.
fn distinct(kinds: impl Iterator<Item = KindRef>) -> Vec<KindRef> {
    let mut out: Vec<KindRef> = Vec::new();
    for kind in kinds {
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    out
}

/// Checks a response against the rules of the contract and the plugin's
/// registration, and converts it. `namespace` is the parent's namespace
/// (None for a cluster-scoped parent).
pub(crate) fn response(
    info: &PluginInfo,
    namespace: Option<&str>,
    response_limit: usize,
    response: Result<wit::Response, wit::Error>,
) -> Result<Desired, RuntimeError> {
    let plugin = &info.name;
    let response = response.map_err(|e| RuntimeError::Reported {
        plugin: plugin.clone(),
        failure: match e {
            wit::Error::InvalidSpec(m) => PluginFailure::InvalidSpec(m),
            wit::Error::Transient(m) => PluginFailure::Transient(m),
            wit::Error::Fatal(m) => PluginFailure::Fatal(m),
        },
    })?;
    let size = response_size(&response);
    if size > response_limit {
        return Err(RuntimeError::ResponseTooLarge {
            plugin: plugin.clone(),
            size,
            limit: response_limit,
        });
    }
    if response.children.len() > MAX_CHILDREN {
        return Err(RuntimeError::TooManyChildren {
            plugin: plugin.clone(),
            count: response.children.len(),
            limit: MAX_CHILDREN,
        });
    }
    let invalid = |reason: String| RuntimeError::InvalidResponse {
        plugin: plugin.clone(),
        reason,
    };

    let allowed: HashSet<&KindRef> = info.children.iter().collect();
    let mut seen = HashSet::new();
    let mut children = Vec::with_capacity(response.children.len());
    for (index, text) in response.children.iter().enumerate() {
        let child = child(&allowed, namespace, text).map_err(|reason| invalid(format!("child {index}: {reason}")))?;
        if !seen.insert((child.kind.clone(), child.name.clone())) {
            return Err(invalid(format!(
                "child {index}: {} {} is listed twice",
                child.kind.kind, child.name
            )));
        }
        children.push(child);
    }

    let status = match response.status {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(status)) => Some(Value::Object(status)),
            Ok(_) => return Err(invalid("status is not a JSON object".into())),
            Err(e) => return Err(invalid(format!("status is not valid JSON: {e}"))),
        },
    };

    let mut conditions = Vec::with_capacity(response.conditions.len());
    for c in response.conditions {
        if c.type_.is_empty() || !matches!(c.status.as_str(), "True" | "False" | "Unknown") || !is_reason(&c.reason) {
            return Err(invalid(format!(
                "condition {:?}: needs a type, a status of True/False/Unknown and a CamelCase reason (got status {:?}, reason {:?})",
                c.type_, c.status, c.reason
            )));
        }
        conditions.push(Condition {
            type_: c.type_,
            status: c.status,
            reason: c.reason,
            message: c.message,
        });
    }

    let events_dropped = response.events.len().saturating_sub(MAX_EVENTS);
    let events = response
        .events
        .into_iter()
        .take(MAX_EVENTS)
        .map(|e| {
            if !is_reason(&e.reason) {
                return Err(invalid(format!("event reason {:?} is not CamelCase", e.reason)));
            }
            Ok(Event {
                warning: matches!(e.severity, wit::Severity::Warning),
                reason: e.reason,
                message: e.message,
            })
        })
        .collect::<Result<_, _>>()?;

    Ok(Desired {
        children,
        status,
        conditions,
        events,
        events_dropped,
        requeue_after: response
            .requeue_after_seconds
            .map(|s| Duration::from_secs(u64::from(s)).max(MIN_REQUEUE)),
        finalized: response.finalized,
        decorations: super::decoration::decorations(&info.related, namespace, response.decorations).map_err(invalid)?,
        related: None,
    })
}

/// Parses and checks one child; the error is a sentence without the index.
fn child(allowed: &HashSet<&KindRef>, namespace: Option<&str>, text: &str) -> Result<DesiredChild, String> {
    let mut child = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("is not a JSON object".into()),
        Err(e) => return Err(format!("is not valid JSON: {e}")),
    };
    let text_of = |key: &str| child.get(key).and_then(Value::as_str);
    let kind = match (text_of("apiVersion"), text_of("kind")) {
        (Some(api_version), Some(kind)) => KindRef::new(api_version, kind),
        _ => return Err("has no apiVersion and kind".into()),
    };
    if !allowed.contains(&kind) {
        return Err(format!("kind {kind} is not among the kinds this plugin may emit"));
    }
    child.remove("status");
    let metadata = match child.get_mut("metadata") {
        Some(Value::Object(metadata)) => metadata,
        _ => return Err(format!("{kind} has no metadata")),
    };
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !is_dns_subdomain(&name) {
        return Err(format!(
            "{kind} name {name:?} is not a valid object name (lowercase DNS subdomain, at most 253 characters)"
        ));
    }
    if metadata.contains_key("ownerReferences") {
        return Err(format!(
            "{kind} {name} sets ownerReferences; the host sets the owner itself"
        ));
    }
    if metadata.contains_key("finalizers") {
        return Err(format!(
            "{kind} {name} sets finalizers; children may not block their own deletion"
        ));
    }
    match (metadata.get("namespace").and_then(Value::as_str), namespace) {
        (Some(own), Some(parent)) if own != parent => {
            return Err(format!(
                "{kind} {name} is in namespace {own:?}, outside the parent's namespace {parent:?}"
            ));
        }
        (Some(_), None) => {
            return Err(format!(
                "{kind} {name} sets a namespace but the parent is cluster-scoped"
            ));
        }
        (None, Some(parent)) => {
            metadata.insert("namespace".into(), Value::String(parent.to_owned()));
        }
        _ => {}
    }
    strip_server_owned(metadata);
    Ok(DesiredChild {
        kind,
        name,
        body: Value::Object(child),
    })
}

fn strip_server_owned(metadata: &mut Map<String, Value>) {
    for field in SERVER_OWNED_METADATA {
        metadata.remove(*field);
    }
}

/// Bytes of text in a response: what the limit on output size counts.
fn response_size(r: &wit::Response) -> usize {
    r.children.iter().map(String::len).sum::<usize>()
        + r.status.as_ref().map_or(0, String::len)
        + r.conditions
            .iter()
            .map(|c| c.type_.len() + c.status.len() + c.reason.len() + c.message.len())
            .sum::<usize>()
        + r.events.iter().map(|e| e.reason.len() + e.message.len()).sum::<usize>()
        + r.decorations
            .iter()
            .map(|d| {
                d.target.name.len()
                    + d.labels
                        .iter()
                        .chain(&d.annotations)
                        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
                        .sum::<usize>()
            })
            .sum::<usize>()
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace or plugin name.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: what Kubernetes accepts as most object names.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A condition or event reason: CamelCase letters, digits and `_`.
fn is_reason(s: &str) -> bool {
    s.len() <= 1024
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(api_version: &str, kind: &str) -> wit::KindRef {
        wit::KindRef {
            api_version: api_version.into(),
            kind: kind.into(),
        }
    }

    fn info(related: Vec<wit::KindRef>, default_related: Vec<wit::KindRef>) -> wit::PluginInfo {
        wit::PluginInfo {
            name: "p".into(),
            version: "1.0.0".into(),
            parent: kind("example.com/v1", "Thing"),
            children: Vec::new(),
            related,
            finalizer: false,
            admission: wit::AdmissionHooks::empty(),
            default_related,
        }
    }

    #[test]
    fn default_related_kinds_must_be_related_kinds() {
        let pods = || vec![kind("v1", "Pod")];
        let ok = plugin_info("p.wasm", info(pods(), pods())).unwrap();
        assert_eq!(ok.default_related, [KindRef::new("v1", "Pod")]);
        let err = plugin_info("p.wasm", info(Vec::new(), pods())).unwrap_err();
        assert!(
            err.to_string().contains("default-related kind v1 Pod is not among"),
            "{err}"
        );
    }
}
