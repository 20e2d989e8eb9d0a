//! The host's own view of the WIT contract: what goes into a plugin call
//! and what comes out, as Rust types with parsed JSON.

use super::decoration::Decoration;
use super::related::{RelatedAnswer, SelectionError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A kind of Kubernetes object, e.g. `apps/v1` `Deployment`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindRef {
    /// `group/version`, or `version` for the core group.
    pub api_version: String,
    /// CamelCase kind.
    pub kind: String,
}

impl KindRef {
    /// A kind from its `apiVersion` and `kind`.
    pub fn new(api_version: &str, kind: &str) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// The kind of a JSON object, if it names one.
    pub fn of(object: &Value) -> Option<Self> {
        Some(Self::new(object["apiVersion"].as_str()?, object["kind"].as_str()?))
    }

    /// The API group (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(group, _)| group)
    }

    /// The API version without the group.
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(&self.api_version, |(_, version)| version)
    }
}

impl std::fmt::Display for KindRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.api_version, self.kind)
    }
}

/// What a plugin says about itself (its `info` export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    /// A DNS label; also the field manager `trellis/<name>`.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The kind it reconciles.
    pub parent: KindRef,
    /// The kinds it may emit.
    pub children: Vec<KindRef>,
    /// The kinds it may read.
    pub related: Vec<KindRef>,
    /// Whether parents get a finalizer.
    pub finalizer: bool,
    /// The admission hooks it asks for (none for a 0.1.0 plugin).
    #[serde(default)]
    pub admission: AdmissionHooks,
    /// Related kinds whose new objects it fills in (`default-related`).
    #[serde(default)]
    pub default_related: Vec<KindRef>,
}

/// The admission hooks a plugin asks for (WIT 0.2.0 `admission-hooks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionHooks {
    /// `validate` is called on creates and updates.
    pub validate: bool,
    /// `default` is called on creates and updates, before validation.
    pub default: bool,
}

impl AdmissionHooks {
    /// Whether the plugin asks for any hook (and so gets a webhook).
    pub fn any(self) -> bool {
        self.validate || self.default
    }
}

/// What the API server is doing with an object under admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        })
    }
}

/// The user behind an admission request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name.
    pub username: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// The input of one `validate` call.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    /// What is being done.
    pub operation: Operation,
    /// The object as it would be stored (none on delete).
    pub object: Option<Value>,
    /// The stored object (on update and delete).
    pub old_object: Option<Value>,
    /// Who asked.
    pub user: UserInfo,
    /// Objects of the plugin's related kinds, as JSON text.
    pub related: Vec<Arc<str>>,
    /// The registration's config.
    pub config: Option<Value>,
}

/// Picks the related objects a parent needs once the plugin has said which
/// (its `related` answer), from the host's caches or render's input.
#[derive(Clone)]
pub struct RelatedPicker(pub Arc<PickRelated>);

/// The function of a [`RelatedPicker`]: the objects an answer picks.
pub type PickRelated = dyn Fn(&RelatedAnswer) -> Result<Vec<Arc<str>>, SelectionError> + Send + Sync;

impl std::fmt::Debug for RelatedPicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelatedPicker")
    }
}

/// The input of one reconcile.
#[derive(Debug, Clone, Default)]
pub struct ReconcileRequest {
    /// The parent object, as JSON text (shared with the parent cache).
    pub parent: Arc<str>,
    /// The observed children owned by the parent, as JSON text (shared
    /// with the caches).
    pub children: Vec<Arc<str>>,
    /// Objects of the related kinds, as JSON text (shared with the caches),
    /// when `pick_related` is `None`.
    pub related: Vec<Arc<str>>,
    /// When set, the plugin's `related` export is asked first (in the same
    /// instance) and the objects handed to `reconcile` are the ones this
    /// picks for its answer; `related` is then unused.
    pub pick_related: Option<RelatedPicker>,
    /// The registration's config.
    pub config: Option<Value>,
    /// True while the parent is being deleted.
    pub finalizing: bool,
}

/// A condition the plugin wants on the parent's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

/// An event the plugin wants recorded on the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Warning (true) or Normal (false).
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

/// A desired child, checked and parsed once: its kind and name are read
/// from it here, not again wherever it is used.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredChild {
    /// Its kind.
    pub kind: KindRef,
    /// Its name.
    pub name: String,
    /// The object: apiVersion, kind, metadata (namespace set to the
    /// parent's, server-owned fields and status removed) and the rest.
    pub body: Value,
}

/// The most events one response may have written; the rest are dropped
/// and counted (`trellis_events_dropped_total`).
pub const MAX_EVENTS: usize = 10;
/// The most children one response may list (bytes alone would let ~38,000
/// tiny ConfigMaps through the default 4 MiB).
pub const MAX_CHILDREN: usize = 1000;
/// The shortest `requeue-after-seconds` honoured: a plugin asking for 0
/// gets this, not a busy loop.
pub const MIN_REQUEUE: Duration = Duration::from_secs(1);

/// A validated response: what the host will make true.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// The desired children.
    pub children: Vec<DesiredChild>,
    /// The parent's new status (a JSON object), if the plugin set one.
    pub status: Option<Value>,
    /// Conditions to set.
    pub conditions: Vec<Condition>,
    /// Events to record: at most [`MAX_EVENTS`].
    pub events: Vec<Event>,
    /// Events the plugin asked for beyond [`MAX_EVENTS`], dropped.
    pub events_dropped: usize,
    /// Reconcile again after this long: at least [`MIN_REQUEUE`].
    pub requeue_after: Option<Duration>,
    /// Cleanup finished (while finalizing).
    pub finalized: bool,
    /// Labels and annotations to keep on objects the plugin does not own.
    pub decorations: Vec<Decoration>,
    /// The plugin's `related` answer, when the request asked for it.
    pub related: Option<RelatedAnswer>,
}
