//! Decorations: labels and annotations a plugin asks the host to keep on
//! objects it does not own. [`decorations`] checks them as a response
//! comes out of the sandbox: a target of a related kind with a valid name,
//! keys and values Kubernetes accepts, none under the host's own
//! `trellis.dev/` prefix, each target once.

use super::bindings::v0_2::trellis::reconciler::types as wit;
use super::contract::KindRef;
use super::validate::{is_dns_label, is_dns_subdomain};
use std::collections::{BTreeMap, HashSet};

/// The most decorations one response may list.
pub const MAX_DECORATIONS: usize = 1000;
/// Keys under this prefix are the host's own.
const HOST_PREFIX: &str = "trellis.dev/";

/// Names the object a decoration is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DecorationTarget {
    pub kind: KindRef,
    /// Its namespace (the parent's when the plugin named none); the
    /// controller drops it for a cluster-scoped kind.
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for DecorationTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Labels and annotations to keep on one object: `Some` to set, `None` to
/// remove whoever set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoration {
    pub target: DecorationTarget,
    pub labels: BTreeMap<String, Option<String>>,
    pub annotations: BTreeMap<String, Option<String>>,
}

impl Decoration {
    /// The labels to set.
    pub fn set_labels(&self) -> BTreeMap<String, String> {
        set(&self.labels)
    }

    /// The annotations to set.
    pub fn set_annotations(&self) -> BTreeMap<String, String> {
        set(&self.annotations)
    }
}

fn set(fields: &BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
    fields
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect()
}

/// Checks the decorations of a response; the error is one sentence.
pub(crate) fn decorations(
    related: &[KindRef],
    parent_namespace: Option<&str>,
    decorations: Vec<wit::Decoration>,
) -> Result<Vec<Decoration>, String> {
    if decorations.len() > MAX_DECORATIONS {
        return Err(format!(
            "lists {} decorations, more than the limit of {MAX_DECORATIONS}",
            decorations.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(decorations.len());
    for (index, d) in decorations.into_iter().enumerate() {
        let decoration = decoration(related, parent_namespace, d).map_err(|e| format!("decoration {index}: {e}"))?;
        if !seen.insert(decoration.target.clone()) {
            return Err(format!("decoration {index}: {} is listed twice", decoration.target));
        }
        out.push(decoration);
    }
    Ok(out)
}

fn decoration(related: &[KindRef], parent_namespace: Option<&str>, d: wit::Decoration) -> Result<Decoration, String> {
    let kind = KindRef {
        api_version: d.target.kind.api_version,
        kind: d.target.kind.kind,
    };
    if !related.contains(&kind) {
        return Err(format!("{kind} is not among the plugin's related kinds"));
    }
    if !is_dns_subdomain(&d.target.name) {
        return Err(format!("{kind} name {:?} is not a valid object name", d.target.name));
    }
    let namespace = match d.target.namespace {
        Some(ns) if !is_dns_label(&ns) => return Err(format!("namespace {ns:?} is not a valid namespace")),
        Some(ns) => Some(ns),
        None => parent_namespace.map(str::to_owned),
    };
    let target = DecorationTarget {
        kind,
        namespace,
        name: d.target.name,
    };
    let labels = fields("label", d.labels, is_label_value)?;
    let annotations = fields("annotation", d.annotations, |_| true)?;
    if labels.is_empty() && annotations.is_empty() {
        return Err(format!("{target} sets no label or annotation"));
    }
    Ok(Decoration {
        target,
        labels,
        annotations,
    })
}

fn fields(
    what: &str,
    pairs: Vec<(String, Option<String>)>,
    valid_value: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut out = BTreeMap::new();
    for (key, value) in pairs {
        if !is_qualified_name(&key) {
            return Err(format!("{what} key {key:?} is not a valid qualified name"));
        }
        if key.starts_with(HOST_PREFIX) {
            return Err(format!(
                "{what} key {key:?} is under the host's own prefix {HOST_PREFIX}"
            ));
        }
        if let Some(v) = &value
            && !valid_value(v)
        {
            return Err(format!("{what} {key}: value {v:?} is not a valid label value"));
        }
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("{what} key {key:?} is listed twice"));
        }
    }
    Ok(out)
}

/// `[prefix/]name`: a DNS subdomain prefix, and a name of at most 63
/// alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// At most 63 alphanumerics, `-`, `_` or `.`, starting and ending
/// alphanumeric (or empty).
fn is_label_value(value: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(alnum)
            && value.ends_with(alnum)
            && value.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_decoration(name: &str, annotations: &[(&str, Option<&str>)]) -> wit::Decoration {
        wit::Decoration {
            target: wit::ObjectRef {
                kind: wit::KindRef {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                },
                namespace: None,
                name: name.into(),
            },
            labels: Vec::new(),
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
        }
    }

    #[test]
    fn a_decoration_targets_a_related_kind_in_the_parents_namespace_by_default() {
        let related = [KindRef::new("v1", "Pod")];
        let out = decorations(
            &related,
            Some("team-a"),
            vec![pod_decoration(
                "web-0",
                &[("prometheus.io/scrape", Some("true")), ("old", None)],
            )],
        )
        .unwrap();
        assert_eq!(out[0].target.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            out[0].set_annotations(),
            BTreeMap::from([("prometheus.io/scrape".to_owned(), "true".to_owned())])
        );
        assert_eq!(out[0].annotations.get("old"), Some(&None));
    }

    #[test]
    fn bad_decorations_are_refused_with_the_reason() {
        let related = [KindRef::new("v1", "Pod")];
        let refused = |d: wit::Decoration| decorations(&related, Some("ns"), vec![d]).unwrap_err();
        let mut secret = pod_decoration("a", &[("k", Some("v"))]);
        secret.target.kind.kind = "Secret".into();
        assert!(refused(secret).contains("not among the plugin's related kinds"));
        assert!(refused(pod_decoration("Bad Name", &[("k", Some("v"))])).contains("not a valid object name"));
        assert!(refused(pod_decoration("a", &[("bad key!", Some("v"))])).contains("not a valid qualified name"));
        assert!(refused(pod_decoration("a", &[("trellis.dev/plugin", Some("x"))])).contains("host's own prefix"));
        assert!(refused(pod_decoration("a", &[])).contains("sets no label or annotation"));
        let mut bad_label = pod_decoration("a", &[]);
        bad_label.labels = vec![("app".into(), Some("not a value".into()))];
        assert!(refused(bad_label).contains("not a valid label value"));
        let twice = decorations(
            &related,
            Some("ns"),
            vec![
                pod_decoration("a", &[("k", Some("v"))]),
                pod_decoration("a", &[("j", Some("v"))]),
            ],
        );
        assert!(twice.unwrap_err().contains("listed twice"));
    }
}
