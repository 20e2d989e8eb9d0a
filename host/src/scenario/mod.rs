//! `trellis test DIR`: a folder of scenarios, each a YAML file giving a
//! parent, its observed children and related objects, and what the plugin
//! must answer (children, status, events, or a refusal). Each runs as
//! `trellis render` would run it; a failing one prints every field that
//! differs, by its path.
//!
//! ```yaml
//! # DIR/ready.yaml
//! parent: ../sample.yaml             # a file (relative to this one) or an inline object
//! observed: ../observed-ready.yaml   # a file, an object or a list of objects
//! expect:
//!   children:                        # exactly these, by apiVersion, kind and name;
//!     - apiVersion: apps/v1          # each a subset of what is rendered
//!       kind: Deployment
//!       metadata: {name: docs}
//!       spec: {replicas: 2}
//!   status: {readyReplicas: 2}       # a subset of the status written
//!   events: [{reason: Scaled}]       # exactly these events, each a subset
//!   decorations:                     # exactly these, in order, each a subset
//!     - {apiVersion: v1, kind: Pod, name: web-0, labels: {scraped: "true"}}
//! ```
//!
//! A decoration's `labels` and `annotations` map each key to the value
//! set, or to `null` for a key removed (as in a subset, `null` also
//! matches a key the decoration does not name). Its `namespace` is the one
//! the plugin named: absent when it named none (the host then uses the
//! parent's).
//!
//! `expect.error: TEXT` expects the reconcile to fail with a message
//! holding `TEXT`.
//!
//! A scenario with `admission: create` (or `update`, with the stored object
//! in `old`) runs the admission hooks on the parent instead, as
//! `trellis render --admission` does, and `expect.admission` is a subset of
//! the verdict: `{allowed: false, messages: [...]}`, or the `patch` of the
//! defaults (`[{op: add, path: /spec/replicas, value: 1}]`). Only the `*.yaml` files directly in DIR are scenarios,
//! so inputs may live in a subfolder.

mod compare;

pub use compare::{Difference, Mismatch, subset};

use crate::render::{RenderError, Rendered, admission_verdict, check_parent_kind, read_objects, reconcile_offline};
use crate::runtime::{Decoration, KindRef, Limits, Operation, Plugin, Runtime, RuntimeConfig, RuntimeError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why scenarios could not be run (a failing scenario is a result, not
/// an error).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read the scenarios in {path}: {source}")]
    ReadDir { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no scenario (*.yaml)")]
    Empty { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a scenario: {source}")]
    Parse { path: PathBuf, source: serde_yaml::Error },
    #[error("{path}: {field} must be a file name, an object or a list of objects")]
    BadObjects { path: PathBuf, field: &'static str },
    #[error("{path}: {field} has no object")]
    NoObject { path: PathBuf, field: &'static str },
    #[error("{path}: {problem}")]
    Mixed { path: PathBuf, problem: &'static str },
    #[error("{path}: {source}")]
    Input { path: PathBuf, source: Box<RenderError> },
    #[error("cannot read the plugin {path}: {source}")]
    ReadPlugin { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Plugin(#[from] RuntimeError),
}

/// Loads the plugin once and runs every scenario of `dir` through it.
pub fn run_dir(
    plugin_path: &Path,
    dir: &Path,
    limits: Limits,
    module_cache_dir: Option<PathBuf>,
) -> Result<Vec<Outcome>, ScenarioError> {
    let scenarios = load_dir(dir)?;
    let bytes = std::fs::read(plugin_path).map_err(|source| ScenarioError::ReadPlugin {
        path: plugin_path.to_owned(),
        source,
    })?;
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 4,
        module_cache_dir,
        ..RuntimeConfig::default()
    })?;
    let plugin = runtime.load(&plugin_path.display().to_string(), &bytes, limits)?;
    Ok(scenarios.iter().map(|s| run(&plugin, s)).collect())
}

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScenarioFile {
    /// What it checks, printed with the result (default: the file name).
    #[serde(default)]
    description: Option<String>,
    parent: Value,
    #[serde(default)]
    observed: Option<Value>,
    #[serde(default)]
    related: Option<Value>,
    #[serde(default)]
    config: Option<Value>,
    /// The namespace of a parent that names none.
    #[serde(default)]
    namespace: Option<String>,
    /// Run the admission hooks on the parent for this operation (`create`,
    /// `update`) instead of a reconcile.
    #[serde(default)]
    admission: Option<AdmissionOperation>,
    /// The stored object, for `admission: update`.
    #[serde(default)]
    old: Option<Value>,
    expect: Expectation,
}

/// The operations a scenario may run the admission hooks for.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AdmissionOperation {
    Create,
    Update,
}

/// What the plugin must answer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    #[serde(default)]
    children: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    events: Option<Vec<Value>>,
    #[serde(default)]
    decorations: Option<Vec<Value>>,
    #[serde(default)]
    admission: Option<Value>,
    #[serde(default)]
    error: Option<String>,
}

/// One scenario, its inputs read.
#[derive(Debug)]
pub struct Scenario {
    /// The file it came from.
    pub path: PathBuf,
    /// Its description, or its file name.
    pub title: String,
    parent: Value,
    observed: Vec<Value>,
    related: Vec<Value>,
    config: Option<Value>,
    /// The admission operation and stored object, for an admission scenario.
    admission: Option<(Operation, Option<Value>)>,
    expect: Expected,
}

#[derive(Debug)]
struct Expected {
    children: Option<Vec<Value>>,
    status: Option<Value>,
    events: Option<Vec<Value>>,
    decorations: Option<Vec<Value>>,
    admission: Option<Value>,
    error: Option<String>,
}

/// A scenario's result: what differs (nothing when it passed).
#[derive(Debug)]
pub struct Outcome {
    pub title: String,
    pub path: PathBuf,
    pub mismatches: Vec<Mismatch>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Reads every scenario of `dir`, in file-name order.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let read_dir = |source| ScenarioError::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_dir)?;
    files.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort();
    if files.is_empty() {
        return Err(ScenarioError::Empty { path: dir.to_owned() });
    }
    files.iter().map(|p| load(p)).collect()
}

/// Reads one scenario file and the files it names.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: ScenarioFile = serde_yaml::from_str(&text).map_err(|source| ScenarioError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let objects = |value: Option<Value>, field| match value {
        None => Ok(Vec::new()),
        Some(value) => objects_of(path, base, field, value),
    };
    // The first object of a field that holds exactly one.
    let one_object = |value: Value, field| {
        objects(Some(value), field)?
            .into_iter()
            .next()
            .ok_or_else(|| ScenarioError::NoObject {
                path: path.to_owned(),
                field,
            })
    };
    let mut parent = one_object(file.parent, "parent")?;
    if parent["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
        parent["metadata"]["namespace"] = json!(file.namespace.as_deref().unwrap_or("default"));
    }
    let reconcile_expected = [
        file.expect.children.is_some(),
        file.expect.status.is_some(),
        file.expect.events.is_some(),
        file.expect.decorations.is_some(),
    ]
    .contains(&true);
    let mixed = |problem| ScenarioError::Mixed {
        path: path.to_owned(),
        problem,
    };
    let namespace = parent["metadata"]["namespace"].clone();
    let admission = match (file.admission, file.old) {
        (Some(_), _) if reconcile_expected => {
            return Err(mixed(
                "an admission scenario expects `admission` (or `error`), not children, status, events or decorations",
            ));
        }
        (Some(_), _) if file.observed.is_some() => {
            return Err(mixed("an admission scenario has no observed children"));
        }
        (Some(AdmissionOperation::Update), None) => {
            return Err(mixed("`admission: update` needs `old`, the stored object"));
        }
        (Some(AdmissionOperation::Update), Some(old)) => {
            let mut old = one_object(old, "old")?;
            // The stored object is where the parent is, as on the API server.
            if old["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
                old["metadata"]["namespace"] = namespace;
            }
            Some((Operation::Update, Some(old)))
        }
        (Some(AdmissionOperation::Create), None) => Some((Operation::Create, None)),
        (Some(AdmissionOperation::Create), Some(_)) | (None, Some(_)) => {
            return Err(mixed("`old` is only for `admission: update`"));
        }
        (None, None) if file.expect.admission.is_some() => {
            return Err(mixed("`expect.admission` needs `admission: create` or `update`"));
        }
        (None, None) => None,
    };
    let expect = Expected {
        children: file
            .expect
            .children
            .map(|c| objects_of(path, base, "expect.children", c))
            .transpose()?,
        status: file.expect.status,
        events: file.expect.events,
        decorations: file.expect.decorations,
        admission: file.expect.admission,
        error: file.expect.error,
    };
    let title = file.description.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Ok(Scenario {
        path: path.to_owned(),
        title,
        parent,
        observed: objects(file.observed, "observed")?,
        related: objects(file.related, "related")?,
        config: file.config,
        admission,
        expect,
    })
}

/// A field holding objects: a file name (a YAML stream, relative to the
/// scenario), one object or a list of them.
fn objects_of(path: &Path, base: &Path, field: &'static str, value: Value) -> Result<Vec<Value>, ScenarioError> {
    let bad = || ScenarioError::BadObjects {
        path: path.to_owned(),
        field,
    };
    let list = match value {
        Value::String(file) => {
            return read_objects(&base.join(file)).map_err(|source| ScenarioError::Input {
                path: path.to_owned(),
                source: Box::new(source),
            });
        }
        Value::Object(_) => vec![value],
        Value::Array(items) => items,
        _ => return Err(bad()),
    };
    if list.iter().all(|o| KindRef::of(o).is_some()) {
        Ok(list)
    } else {
        Err(bad())
    }
}

/// Runs one scenario through `plugin` and compares.
pub fn run(plugin: &Plugin, scenario: &Scenario) -> Outcome {
    if let Some((operation, old)) = &scenario.admission {
        let verdict = check_parent_kind(plugin, &scenario.parent).and_then(|()| {
            let related = scenario.related.iter().map(|r| Arc::from(r.to_string())).collect();
            admission_verdict(
                plugin,
                *operation,
                scenario.parent.clone(),
                old.clone(),
                related,
                scenario.config.clone(),
            )
        });
        return Outcome {
            title: scenario.title.clone(),
            path: scenario.path.clone(),
            mismatches: compare_admission(&scenario.expect, verdict),
        };
    }
    let rendered = check_parent_kind(plugin, &scenario.parent).and_then(|()| {
        reconcile_offline(
            plugin,
            &scenario.parent,
            &scenario.observed,
            &scenario.related,
            scenario.config.clone(),
        )
        .map_err(RenderError::from)
    });
    Outcome {
        title: scenario.title.clone(),
        path: scenario.path.clone(),
        mismatches: compare(&scenario.expect, rendered),
    }
}

/// The call's result when the scenario expects an error (`Err`: no
/// difference, or the one found), else what it returned.
fn expected_outcome<T>(call: &str, expect: &Expected, result: Result<T, RenderError>) -> Result<T, Vec<Mismatch>> {
    let outcome = |expected: String, actual: String| {
        vec![Mismatch {
            path: call.to_owned(),
            difference: Difference::Outcome { expected, actual },
        }]
    };
    match (result, &expect.error) {
        (Err(e), Some(text)) if e.to_string().contains(text.as_str()) => Err(Vec::new()),
        (Err(e), Some(text)) => Err(outcome(
            format!("an error with {text:?}"),
            format!("{:?}", e.to_string()),
        )),
        (Err(e), None) => Err(outcome("success".into(), format!("the error {:?}", e.to_string()))),
        (Ok(_), Some(text)) => Err(outcome(format!("an error with {text:?}"), "success".into())),
        (Ok(value), None) => Ok(value),
    }
}

/// [`compare`] for an admission scenario: the verdict against `expect.admission`.
fn compare_admission(expect: &Expected, verdict: Result<Value, RenderError>) -> Vec<Mismatch> {
    match expected_outcome("admission", expect, verdict) {
        Err(found) => found,
        Ok(verdict) => expect
            .admission
            .as_ref()
            .map(|want| subset("admission", want, &verdict))
            .unwrap_or_default(),
    }
}

/// The pure part of [`run`]: every difference between the expectation and
/// what was rendered (or the error it failed with).
fn compare(expect: &Expected, rendered: Result<Rendered, RenderError>) -> Vec<Mismatch> {
    let rendered = match expected_outcome("reconcile", expect, rendered) {
        Err(found) => return found,
        Ok(rendered) => rendered,
    };
    let mut found = Vec::new();
    if let Some(children) = &expect.children {
        found.extend(compare_children(children, &rendered.children));
    }
    if let Some(status) = &expect.status {
        found.extend(subset("status", status, &rendered.parent["status"]));
    }
    if let Some(events) = &expect.events {
        let actual: Vec<Value> = rendered
            .events
            .iter()
            .map(|e| {
                json!({
                    "type": if e.warning { "Warning" } else { "Normal" },
                    "reason": e.reason,
                    "message": e.message,
                })
            })
            .collect();
        found.extend(subset("events", &Value::Array(events.clone()), &Value::Array(actual)));
    }
    if let Some(decorations) = &expect.decorations {
        let actual: Vec<Value> = rendered.decorations.iter().map(decoration_fields).collect();
        found.extend(subset(
            "decorations",
            &Value::Array(decorations.clone()),
            &Value::Array(actual),
        ));
    }
    found
}

/// A decoration as a scenario names it: its target's `apiVersion`, `kind`,
/// `namespace` and `name`, and the `labels` and `annotations` it sets
/// (`null`: removes).
fn decoration_fields(decoration: &Decoration) -> Value {
    let target = &decoration.target;
    json!({
        "apiVersion": target.kind.api_version,
        "kind": target.kind.kind,
        "namespace": target.namespace,
        "name": target.name,
        "labels": decoration.labels,
        "annotations": decoration.annotations,
    })
}

/// `apiVersion kind name`, how a child is named in a path.
fn identity(object: &Value) -> String {
    format!(
        "{} {} {}",
        object["apiVersion"].as_str().unwrap_or_default(),
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// Children match by identity; each expected one is a subset of its match.
fn compare_children(expected: &[Value], actual: &[Value]) -> Vec<Mismatch> {
    let mut found = Vec::new();
    for want in expected {
        let id = identity(want);
        let path = format!("children[{id}]");
        match actual.iter().find(|have| identity(have) == id) {
            Some(have) => found.extend(subset(&path, want, have)),
            None => found.push(Mismatch {
                path,
                difference: Difference::MissingObject,
            }),
        }
    }
    for have in actual {
        let id = identity(have);
        if !expected.iter().any(|want| identity(want) == id) {
            found.push(Mismatch {
                path: format!("children[{id}]"),
                difference: Difference::UnexpectedObject,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: u32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": replicas}})
    }

    fn rendered(children: Vec<Value>) -> Rendered {
        Rendered {
            children,
            parent: json!({"status": {"url": "http://x/"}}),
            decorations: Vec::new(),
            events: Vec::new(),
        }
    }

    fn expected(children: Vec<Value>) -> Expected {
        Expected {
            children: Some(children),
            status: Some(json!({"url": "http://x/"})),
            events: None,
            decorations: None,
            admission: None,
            error: None,
        }
    }

    #[test]
    fn a_changed_child_is_named_by_field() {
        let lines: Vec<String> = compare(&expected(vec![deployment(3)]), Ok(rendered(vec![deployment(2)])))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            ["children[apps/v1 Deployment web].spec.replicas: expected 3, got 2"]
        );
    }

    #[test]
    fn missing_and_extra_children_are_reported() {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let lines: Vec<String> = compare(&expected(vec![service]), Ok(rendered(vec![deployment(2)])))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "children[v1 Service web]: expected, not rendered",
                "children[apps/v1 Deployment web]: rendered, not expected",
            ]
        );
    }

    #[test]
    fn decorations_are_compared_by_field() {
        use crate::runtime::DecorationTarget;
        let decoration = Decoration {
            target: DecorationTarget {
                kind: KindRef::new("v1", "Pod"),
                namespace: Some("web".into()),
                name: "web-0".into(),
            },
            labels: [
                ("scraped".to_owned(), Some("true".to_owned())),
                ("old".to_owned(), None),
            ]
            .into(),
            annotations: Default::default(),
        };
        let mut have = rendered(Vec::new());
        have.decorations = vec![decoration];
        let mut expect = expected(Vec::new());
        expect.children = None;
        expect.decorations = Some(vec![
            json!({"kind": "Pod", "name": "web-0", "labels": {"scraped": "false", "old": null}}),
        ]);
        let lines: Vec<String> = compare(&expect, Ok(have)).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [r#"decorations[0].labels.scraped: expected "false", got "true""#]
        );
        expect.decorations = Some(Vec::new());
        let mut have = rendered(Vec::new());
        have.decorations = Vec::new();
        assert!(compare(&expect, Ok(have)).is_empty(), "none expected, none made");
    }

    #[test]
    fn an_expected_error_must_happen_with_its_text() {
        let mut expect = expected(Vec::new());
        expect.error = Some("spec.host is required".into());
        let refused = || Err(RenderError::NoOldObject);
        assert_eq!(compare(&expect, refused()).len(), 1, "another message");
        assert_eq!(compare(&expect, Ok(rendered(Vec::new()))).len(), 1, "no failure");
        expect.error = Some("--old".into());
        assert!(compare(&expect, refused()).is_empty());
    }
}
