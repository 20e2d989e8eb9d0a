//! `trellis render`: runs a plugin offline on YAML files and prints what the
//! host would apply, like `helm template` or `crossplane render`.

use crate::runtime::{
    AdmissionRequest, Candidate, Decoration, KindRef, Limits, Operation, Plugin, ReconcileRequest, RelatedAnswer,
    RelatedPicker, Runtime, RuntimeConfig, RuntimeError, UserInfo, namespace_kind,
};
use crate::status;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a render failed. Each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid YAML: {source}")]
    Yaml { path: PathBuf, source: serde_yaml::Error },
    #[error("{path} holds no object")]
    NoParent { path: PathBuf },
    #[error("{path}: object {index} has no apiVersion and kind")]
    NotAnObject { path: PathBuf, index: usize },
    #[error("the parent is a {found}, but plugin {plugin} reconciles {expected}")]
    WrongParentKind {
        plugin: String,
        expected: KindRef,
        found: KindRef,
    },
    #[error("--config is not valid JSON: {0}")]
    Config(serde_json::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot print the result as YAML: {0}")]
    Print(serde_yaml::Error),
    #[error("--admission update needs --old, the stored object")]
    NoOldObject,
}

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderInput {
    /// The plugin's `.wasm`.
    pub plugin: PathBuf,
    /// A YAML file with the parent object.
    pub parent: PathBuf,
    /// A YAML stream of observed children.
    pub observed: Option<PathBuf>,
    /// A YAML stream of related objects.
    pub related: Option<PathBuf>,
    /// The registration's config, JSON.
    pub config: Option<String>,
    /// The namespace a parent without one is rendered in, as `kubectl
    /// apply` would put it.
    pub namespace: String,
    /// Limits for the call.
    pub limits: Limits,
    /// Run the admission hooks for this operation instead of a reconcile.
    pub admission: Option<Operation>,
    /// The stored object, for `--admission update`.
    pub old: Option<PathBuf>,
    /// wasmtime's compiled-module cache (`None`: compile every time).
    pub module_cache_dir: Option<PathBuf>,
}

/// Runs the plugin once and returns the YAML stream to print: the desired
/// children, then the parent with the status the host would write, then
/// the events it would record (as YAML comments).
pub fn render(input: &RenderInput) -> Result<String, RenderError> {
    let mut parent = read_objects(&input.parent)?
        .into_iter()
        .next()
        .ok_or_else(|| RenderError::NoParent {
            path: input.parent.clone(),
        })?;
    if parent["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
        parent["metadata"]["namespace"] = json!(input.namespace);
    }
    let children = input
        .observed
        .as_deref()
        .map(read_objects)
        .transpose()?
        .unwrap_or_default();
    let related = input
        .related
        .as_deref()
        .map(read_objects)
        .transpose()?
        .unwrap_or_default();
    let config = input
        .config
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(RenderError::Config)?;

    let bytes = std::fs::read(&input.plugin).map_err(|source| RenderError::Read {
        path: input.plugin.clone(),
        source,
    })?;
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 4,
        module_cache_dir: input.module_cache_dir.clone(),
        ..RuntimeConfig::default()
    })?;
    let plugin = runtime.load(&input.plugin.display().to_string(), &bytes, input.limits)?;

    check_parent_kind(&plugin, &parent)?;
    if let Some(operation) = input.admission {
        let old = match (&input.old, operation) {
            (Some(path), _) => read_objects(path)?.into_iter().next(),
            (None, Operation::Update) => return Err(RenderError::NoOldObject),
            (None, _) => None,
        };
        let related = related.iter().map(|r| Arc::from(r.to_string())).collect();
        let verdict = admission_verdict(&plugin, operation, parent, old, related, config)?;
        return Ok(format!(
            "---\n{}",
            serde_yaml::to_string(&verdict).map_err(RenderError::Print)?
        ));
    }
    reconcile_offline(&plugin, &parent, &children, &related, config)?.to_yaml()
}

/// Refuses a parent of another kind than the plugin reconciles.
pub fn check_parent_kind(plugin: &Plugin, parent: &Value) -> Result<(), RenderError> {
    let found = KindRef::of(parent).unwrap_or_else(|| KindRef::new("", ""));
    if found != plugin.info().parent {
        return Err(RenderError::WrongParentKind {
            plugin: plugin.info().name.clone(),
            expected: plugin.info().parent.clone(),
            found,
        });
    }
    Ok(())
}

/// What one reconcile would have the host do, as `render` prints it and
/// `trellis test` compares it.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The desired children, in the plugin's order.
    pub children: Vec<Value>,
    /// The parent's kind, name and namespace with the status the host
    /// would write.
    pub parent: Value,
    /// Labels and annotations it would keep on objects it does not own.
    pub decorations: Vec<Decoration>,
    /// Events it would record on the parent.
    pub events: Vec<crate::runtime::Event>,
}

impl Rendered {
    /// The YAML stream `trellis render` prints: the children, then the
    /// parent with its status, then decorations and events as comments.
    pub fn to_yaml(&self) -> Result<String, RenderError> {
        let mut out = String::new();
        for object in self.children.iter().chain(std::iter::once(&self.parent)) {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(object).map_err(RenderError::Print)?);
        }
        for decoration in &self.decorations {
            out.push_str(&decoration_line(decoration));
        }
        for event in &self.events {
            let kind = if event.warning { "Warning" } else { "Normal" };
            out.push_str(&format!("# event {kind} {}: {}\n", event.reason, event.message));
        }
        Ok(out)
    }
}

/// Reconciles `parent` once through `plugin`, with `children` observed and
/// `related` objects picked as the host would pick them from its caches.
pub fn reconcile_offline(
    plugin: &Plugin,
    parent: &Value,
    children: &[Value],
    related: &[Value],
    config: Option<Value>,
) -> Result<Rendered, RuntimeError> {
    let namespace = parent["metadata"]["namespace"].as_str().map(str::to_owned);
    let given = GivenRelated::new(related, namespace.as_deref());
    let request = ReconcileRequest {
        parent: Arc::from(parent.to_string()),
        children: children.iter().map(|c| Arc::from(c.to_string())).collect(),
        related: Vec::new(),
        pick_related: Some(RelatedPicker(Arc::new(move |answer| {
            Ok(given.pick(answer, namespace.as_deref()))
        }))),
        config,
        finalizing: false,
    };
    let desired = plugin.reconcile(&request)?;

    let status = status::desired_status(parent, &desired, &status::now());
    let mut parent_metadata = json!({ "name": parent["metadata"]["name"] });
    if let Some(ns) = parent["metadata"]["namespace"].as_str() {
        parent_metadata["namespace"] = json!(ns);
    }
    Ok(Rendered {
        children: desired.children.iter().map(|c| c.body.clone()).collect(),
        parent: json!({
            "apiVersion": parent["apiVersion"],
            "kind": parent["kind"],
            "metadata": parent_metadata,
            "status": status,
        }),
        decorations: desired.decorations,
        events: desired.events,
    })
}

/// One decoration as a comment line: its target, then the labels and
/// annotations set (`null`: removed) as JSON.
fn decoration_line(decoration: &Decoration) -> String {
    let target = &decoration.target;
    let at = match &target.namespace {
        Some(ns) => format!("{ns}/{}", target.name),
        None => target.name.clone(),
    };
    let fields = json!({"labels": decoration.labels, "annotations": decoration.annotations});
    format!("# decorate {} {at} {fields}\n", target.kind)
}

/// Kinds render takes as cluster-scoped (it has no API to ask): the
/// others, without a namespace, are in the parent's.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
];

/// A `--related` object as a selector sees it.
struct GivenObject {
    kind: KindRef,
    namespace: Option<String>,
    name: String,
    labels: BTreeMap<String, String>,
    text: Arc<str>,
}

impl Candidate for GivenObject {
    fn kind(&self) -> &KindRef {
        &self.kind
    }
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// The `--related` objects, picked as the host would pick from its caches.
struct GivenRelated {
    objects: Vec<GivenObject>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
}

impl GivenRelated {
    fn new(related: &[Value], parent_namespace: Option<&str>) -> Self {
        let objects: Vec<GivenObject> = related
            .iter()
            .map(|object| {
                let kind = KindRef::of(object).unwrap_or_else(|| KindRef::new("", ""));
                let meta = &object["metadata"];
                let namespace = match meta["namespace"].as_str() {
                    Some(ns) => Some(ns.to_owned()),
                    None if CLUSTER_SCOPED.contains(&kind.kind.as_str()) => None,
                    None => parent_namespace.map(str::to_owned),
                };
                GivenObject {
                    kind,
                    namespace,
                    name: meta["name"].as_str().unwrap_or_default().to_owned(),
                    labels: serde_json::from_value(meta["labels"].clone()).unwrap_or_default(),
                    text: Arc::from(object.to_string()),
                }
            })
            .collect();
        let namespace_labels = objects
            .iter()
            .filter(|o| o.kind == namespace_kind())
            .map(|o| (o.name.clone(), o.labels.clone()))
            .collect();
        Self {
            objects,
            namespace_labels,
        }
    }

    /// Every object without an answer (as given); with one, what it picks.
    fn pick(&self, answer: &RelatedAnswer, parent_namespace: Option<&str>) -> Vec<Arc<str>> {
        let RelatedAnswer::Selected(selectors) = answer else {
            return self.objects.iter().map(|o| o.text.clone()).collect();
        };
        let labels_of = |ns: &str| self.namespace_labels.get(ns);
        self.objects
            .iter()
            .filter(|o| selectors.iter().any(|s| s.selects(*o, parent_namespace, &labels_of)))
            .map(|o| o.text.clone())
            .collect()
    }
}

/// What the host's webhooks would answer for `object` on `operation`: the
/// plugin's `default` (and the JSONPatch of what it changed), then its
/// `validate` of the defaulted object; `allowed` unless either objected,
/// with the messages. A refusal is a result, not an error.
pub fn admission_verdict(
    plugin: &Plugin,
    operation: Operation,
    object: Value,
    old: Option<Value>,
    related: Vec<Arc<str>>,
    config: Option<Value>,
) -> Result<Value, RenderError> {
    let hooks = plugin.info().admission;
    let mut messages = Vec::new();
    let (defaulted, patch) = match plugin.default(&object, None)? {
        Ok(defaulted) => {
            let patch = crate::admission::review::patch_of(&object, &defaulted);
            (defaulted, patch)
        }
        Err(objections) => {
            messages.extend(objections);
            (object.clone(), json_patch::Patch(Vec::new()))
        }
    };
    if messages.is_empty() {
        let request = AdmissionRequest {
            operation,
            object: Some(defaulted),
            old_object: old,
            user: UserInfo {
                username: "trellis-render".into(),
                groups: vec!["system:authenticated".into()],
            },
            related,
            config,
        };
        if let Err(objections) = plugin.validate(&request, None)? {
            messages.extend(objections);
        }
    }
    Ok(json!({
        "operation": operation.to_string(),
        "plugin": plugin.info().name,
        "hooks": {"validate": hooks.validate, "default": hooks.default},
        "allowed": messages.is_empty(),
        "messages": messages,
        "patch": patch,
    }))
}

/// Reads a YAML stream of objects; empty documents are skipped.
pub fn read_objects(path: &Path) -> Result<Vec<Value>, RenderError> {
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).map_err(|source| RenderError::Yaml {
            path: path.to_owned(),
            source,
        })?;
        if value.is_null() {
            continue;
        }
        if KindRef::of(&value).is_none() {
            return Err(RenderError::NotAnObject {
                path: path.to_owned(),
                index: objects.len(),
            });
        }
        objects.push(value);
    }
    Ok(objects)
}
