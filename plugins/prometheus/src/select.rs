//! Which related objects a Prometheus uses, decided inside the plugin from
//! whatever it is handed: ServiceMonitors, PodMonitors and PrometheusRules
//! whose labels match the Prometheus's selector (a nil selector selects
//! none) in the namespaces its namespace selector covers. The same choice,
//! as `RelatedSelector`s, asks the host for only those objects
//! ([`wanted`]); the plugin filters again all the same.

use crate::monitors::{self, API_VERSION, Kind, Monitor};
use crate::rules::{self, RuleFile};
use crate::selector::{Namespaces, Scope};
use crate::spec::{Checked, Selection};
use std::collections::{BTreeMap, BTreeSet};
use trellis_sdk::k8s_openapi::api::core::v1::Namespace;
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use trellis_sdk::labels::matches;
use trellis_sdk::serde_json::{self, Value};
use trellis_sdk::{RelatedSelector, Request};

/// What a Prometheus scrapes and evaluates.
#[derive(Debug, Default)]
pub struct Selected {
    /// ServiceMonitors, then PodMonitors, each by namespace and name.
    pub monitors: Vec<Monitor>,
    /// By namespace and name.
    pub rules: Vec<RuleFile>,
    /// Objects selected but unusable: `(event reason, sentence)`.
    pub skipped: Vec<(&'static str, String)>,
}

impl Selected {
    /// `2 ServiceMonitors, 1 PodMonitor and 1 PrometheusRule selected`.
    pub fn summary(&self) -> String {
        let count = |n: usize, kind: &str| format!("{n} {kind}{}", if n == 1 { "" } else { "s" });
        let services = self.monitors.iter().filter(|m| m.kind == Kind::Service).count();
        let pods = self.monitors.len() - services;
        let mut summary = format!(
            "{}, {} and {} selected",
            count(services, "ServiceMonitor"),
            count(pods, "PodMonitor"),
            count(self.rules.len(), "PrometheusRule")
        );
        if !self.skipped.is_empty() {
            summary.push_str(&format!("; {} skipped (see the events)", self.skipped.len()));
        }
        summary
    }
}

/// The object's labels; labels that do not parse are no labels.
fn labels_of(object: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default()
}

/// The objects of `kind` that `selection` picks for a Prometheus in
/// `own`, by namespace and name; objects being deleted are gone already.
fn picked<'a>(
    req: &'a Request,
    kind: &str,
    selection: Selection<'_>,
    own: &str,
    namespaces: &Namespaces,
) -> Vec<&'a Value> {
    let Some(labels) = selection.labels else {
        return Vec::new();
    };
    let mut objects: Vec<&Value> = req
        .related_kind_json(API_VERSION, kind)
        .into_iter()
        .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
        .filter(|o| {
            let namespace = o["metadata"]["namespace"].as_str().unwrap_or_default();
            namespaces.contains(selection.namespaces, own, namespace)
        })
        .filter(|o| matches(labels, &labels_of(o)))
        .collect();
    let meta = |o: &Value, field: &str| o["metadata"][field].as_str().unwrap_or_default().to_owned();
    objects.sort_by_key(|o| (meta(o, "namespace"), meta(o, "name")));
    objects
}

/// The labels of the Namespaces the plugin was handed.
fn namespaces(req: &Request) -> Namespaces {
    Namespaces::new(req.related::<Namespace>().into_iter().filter_map(|ns| {
        let name = ns.metadata.name?;
        Some((name, ns.metadata.labels.unwrap_or_default()))
    }))
}

/// The monitors and rules `spec` selects among the request's related
/// objects, checked.
pub fn select(req: &Request, spec: &Checked<'_>) -> Selected {
    let own = req.namespace();
    let namespaces = namespaces(req);
    let interval = spec.scrape_interval_millis();
    let mut selected = Selected::default();
    type Check = fn(&Value, u64) -> Result<Monitor, String>;
    let kinds: [(Kind, Selection<'_>, Check, &'static str); 2] = [
        (
            Kind::Service,
            spec.service_monitors,
            monitors::service_monitor,
            "InvalidServiceMonitor",
        ),
        (Kind::Pod, spec.pod_monitors, monitors::pod_monitor, "InvalidPodMonitor"),
    ];
    for (kind, selection, check, reason) in kinds {
        let kind = kind.name();
        for object in picked(req, kind, selection, own, &namespaces) {
            match check(object, interval) {
                Ok(monitor) => selected.monitors.push(monitor),
                Err(why) => selected.skipped.push((
                    reason,
                    format!("{kind} {} skipped: {why}", monitors::display_name(object)),
                )),
            }
        }
    }
    let mut keys = BTreeSet::new();
    for object in picked(req, "PrometheusRule", spec.rules, own, &namespaces) {
        let skip = |why: String| {
            (
                "InvalidPrometheusRule",
                format!("PrometheusRule {} skipped: {why}", monitors::display_name(object)),
            )
        };
        match rules::rule_file(object) {
            Ok(file) if keys.insert(file.key.clone()) => selected.rules.push(file),
            Ok(file) => selected.skipped.push(skip(format!(
                "another PrometheusRule already has the file {}",
                file.key
            ))),
            Err(why) => selected.skipped.push(skip(why)),
        }
    }
    selected
}

/// The related objects `spec` needs, for the host's selective reads: per
/// kind with a selector, the objects its labels match where its namespace
/// selector looks; and the Namespaces each label-based namespace selector
/// matches.
pub fn wanted(spec: &Checked<'_>) -> Vec<RelatedSelector> {
    let mut wanted = Vec::new();
    let mut namespace_selectors: Vec<&LabelSelector> = Vec::new();
    for (kind, selection) in [
        (Kind::Service.name(), spec.service_monitors),
        (Kind::Pod.name(), spec.pod_monitors),
        ("PrometheusRule", spec.rules),
    ] {
        let Some(labels) = selection.labels else { continue };
        let objects = RelatedSelector::kind(API_VERSION, kind).labels(labels);
        wanted.push(match selection.namespaces {
            Scope::Own => objects,
            Scope::All => objects.in_namespaces_matching(&LabelSelector::default()),
            Scope::Matching(namespaces) => {
                if !namespace_selectors.contains(&namespaces) {
                    namespace_selectors.push(namespaces);
                }
                objects.in_namespaces_matching(namespaces)
            }
        });
    }
    wanted.extend(
        namespace_selectors
            .into_iter()
            .map(|s| RelatedSelector::of::<Namespace>().labels(s)),
    );
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use trellis_sdk::serde_json::json;

    fn object(kind: &str, namespace: &str, name: &str, labels: Value, spec: Value) -> Value {
        json!({
            "apiVersion": API_VERSION, "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec,
        })
    }

    fn namespace(name: &str, labels: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    }

    fn request(related: Vec<Value>) -> Request {
        let parent = json!({
            "apiVersion": API_VERSION, "kind": "Prometheus", "metadata": {"name": "k8s", "namespace": "mon"},
        });
        related.into_iter().fold(Request::new(parent), Request::with_related)
    }

    fn spec(json: Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn names(selected: &Selected) -> Vec<String> {
        selected
            .monitors
            .iter()
            .map(|m| format!("{}/{}/{}", m.kind.name(), m.namespace, m.name))
            .collect()
    }

    fn everything() -> Vec<Value> {
        let web = json!({"endpoints": [{"port": "web"}]});
        vec![
            object("ServiceMonitor", "mon", "b", json!({"team": "frontend"}), web.clone()),
            object("ServiceMonitor", "mon", "a", json!({"team": "frontend"}), web.clone()),
            object(
                "ServiceMonitor",
                "mon",
                "backend",
                json!({"team": "backend"}),
                web.clone(),
            ),
            object(
                "ServiceMonitor",
                "apps",
                "apps",
                json!({"team": "frontend"}),
                web.clone(),
            ),
            object("ServiceMonitor", "other", "other", json!({"team": "frontend"}), web),
            object("PodMonitor", "mon", "pods", json!({"team": "frontend"}), json!({})),
            namespace("mon", json!({})),
            namespace("apps", json!({"monitoring": "enabled"})),
            namespace("other", json!({})),
        ]
    }

    #[test]
    fn monitors_of_the_own_namespace_by_their_labels_in_order() {
        let s = spec(json!({"serviceMonitorSelector": {"matchLabels": {"team": "frontend"}}}));
        let selected = select(&request(everything()), &s.checked("mon").unwrap());
        assert_eq!(names(&selected), ["ServiceMonitor/mon/a", "ServiceMonitor/mon/b"]);
        assert_eq!(
            selected.summary(),
            "2 ServiceMonitors, 0 PodMonitors and 0 PrometheusRules selected"
        );
    }

    #[test]
    fn a_nil_selector_selects_none_and_an_empty_one_all() {
        let none = spec(json!({}));
        assert!(
            select(&request(everything()), &none.checked("mon").unwrap())
                .monitors
                .is_empty()
        );
        let all = spec(json!({"serviceMonitorSelector": {}, "podMonitorSelector": {}}));
        let selected = select(&request(everything()), &all.checked("mon").unwrap());
        assert_eq!(
            names(&selected),
            [
                "ServiceMonitor/mon/a",
                "ServiceMonitor/mon/b",
                "ServiceMonitor/mon/backend",
                "PodMonitor/mon/pods"
            ]
        );
    }

    #[test]
    fn namespace_selectors_pick_namespaces_by_their_labels_or_all() {
        let s = spec(json!({
            "serviceMonitorSelector": {"matchLabels": {"team": "frontend"}},
            "serviceMonitorNamespaceSelector": {"matchLabels": {"monitoring": "enabled"}},
        }));
        let selected = select(&request(everything()), &s.checked("mon").unwrap());
        assert_eq!(
            names(&selected),
            ["ServiceMonitor/apps/apps"],
            "not even the own namespace"
        );
        let all = spec(json!({
            "serviceMonitorSelector": {"matchLabels": {"team": "frontend"}},
            "serviceMonitorNamespaceSelector": {},
        }));
        let selected = select(&request(everything()), &all.checked("mon").unwrap());
        assert_eq!(
            names(&selected),
            [
                "ServiceMonitor/apps/apps",
                "ServiceMonitor/mon/a",
                "ServiceMonitor/mon/b",
                "ServiceMonitor/other/other"
            ]
        );
    }

    #[test]
    fn unusable_objects_are_skipped_with_a_reason() {
        let mut related = everything();
        related.push(object(
            "ServiceMonitor",
            "mon",
            "c-bad",
            json!({"team": "frontend"}),
            json!({"endpoints": [{"port": "web", "scheme": "ftp"}]}),
        ));
        let gone = object("ServiceMonitor", "mon", "gone", json!({"team": "frontend"}), json!({}));
        let mut gone = gone;
        gone["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        related.push(gone);
        let rule = |ns: &str, name: &str, groups: Value| {
            object(
                "PrometheusRule",
                ns,
                name,
                json!({"role": "alert-rules"}),
                json!({"groups": groups}),
            )
        };
        related.push(rule(
            "mon",
            "good",
            json!([{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]),
        ));
        related.push(rule("mon", "bad", json!([{"name": "g", "rules": [{"alert": "A"}]}])));
        related.push(rule("mon-a", "b", json!([])));
        related.push(rule("mon", "a-b", json!([])));
        let s = spec(json!({
            "serviceMonitorSelector": {"matchLabels": {"team": "frontend"}},
            "ruleSelector": {"matchLabels": {"role": "alert-rules"}}, "ruleNamespaceSelector": {},
        }));
        let selected = select(&request(related), &s.checked("mon").unwrap());
        assert_eq!(names(&selected), ["ServiceMonitor/mon/a", "ServiceMonitor/mon/b"]);
        assert_eq!(
            selected.rules.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            ["mon-a-b.yaml", "mon-good.yaml"]
        );
        assert_eq!(
            selected.skipped,
            [
                (
                    "InvalidServiceMonitor",
                    "ServiceMonitor mon/c-bad skipped: endpoint 0: scheme \"ftp\" is neither http nor https".to_owned()
                ),
                (
                    "InvalidPrometheusRule",
                    "PrometheusRule mon/bad skipped: group \"g\" rule 0 has no expr".to_owned()
                ),
                (
                    "InvalidPrometheusRule",
                    "PrometheusRule mon-a/b skipped: another PrometheusRule already has the file mon-a-b.yaml"
                        .to_owned()
                ),
            ]
        );
        assert!(selected.summary().ends_with("; 3 skipped (see the events)"));
    }

    #[test]
    fn the_host_is_asked_for_what_the_selectors_pick() {
        let none = spec(json!({}));
        assert_eq!(wanted(&none.checked("mon").unwrap()), []);
        let enabled = json!({"matchLabels": {"monitoring": "enabled"}});
        let s = spec(json!({
            "serviceMonitorSelector": {"matchLabels": {"team": "frontend"}},
            "serviceMonitorNamespaceSelector": enabled,
            "podMonitorSelector": {},
            "podMonitorNamespaceSelector": enabled,
            "ruleSelector": {"matchLabels": {"role": "alert-rules"}},
            "ruleNamespaceSelector": {},
        }));
        let selector = |v: Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
        let enabled = selector(enabled);
        assert_eq!(
            wanted(&s.checked("mon").unwrap()),
            [
                RelatedSelector::kind(API_VERSION, "ServiceMonitor")
                    .labels(&selector(json!({"matchLabels": {"team": "frontend"}})))
                    .in_namespaces_matching(&enabled),
                RelatedSelector::kind(API_VERSION, "PodMonitor")
                    .labels(&LabelSelector::default())
                    .in_namespaces_matching(&enabled),
                RelatedSelector::kind(API_VERSION, "PrometheusRule")
                    .labels(&selector(json!({"matchLabels": {"role": "alert-rules"}})))
                    .in_namespaces_matching(&LabelSelector::default()),
                RelatedSelector::of::<Namespace>().labels(&enabled),
            ]
        );
        let own = spec(json!({"podMonitorSelector": {"matchLabels": {"a": "b"}}}));
        assert_eq!(
            wanted(&own.checked("mon").unwrap()),
            [RelatedSelector::kind(API_VERSION, "PodMonitor").labels(&selector(json!({"matchLabels": {"a": "b"}})))]
        );
    }
}
