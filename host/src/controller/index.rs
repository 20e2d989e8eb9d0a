//! Caches of children and related objects, indexed the way a reconcile
//! reads them, holding each object once as the JSON a plugin is handed.
//!
//! A reconcile needs "the children owned by this parent" and "the related
//! objects this parent may see". Scanning a reflector's store for them is
//! O(objects) per reconcile, and converting each match to JSON again on
//! every reconcile costs more than the plugin call. An [`ObjectIndex`] is fed
//! by the watch events themselves: each object is serialised once, when it
//! changes (managedFields dropped, `apiVersion`/`kind` set), and filed under
//! its [`IndexKey`]: the controller owner's uid for children, the namespace
//! for related objects. A lookup is then one map access, and the objects are
//! shared (`Arc`), not copied.
//!
//! Objects are kept as their JSON text ([`CachedObject`]), which is what a
//! plugin is handed, plus the few fields the host reads without parsing: a
//! parsed `serde_json::Value` takes several times the memory of its text.

use super::ServedKind;
use super::children::{DESIRED_HASH, PARENT_UID_LABEL};
use crate::runtime::KindRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::watcher;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// How objects of one cache are filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKey {
    /// Children: by the uid of their controller owner, when their
    /// parent-uid label agrees (anything else is not a child of ours).
    OwnerUid,
    /// Related objects of a namespaced kind: by namespace.
    Namespace,
    /// Related `Namespace` objects: each relates to the parents inside it.
    NamespaceItself,
    /// Related objects of another cluster-scoped kind: all under one key.
    Cluster,
}

impl IndexKey {
    /// How related objects of `kind` are filed.
    pub fn for_related(kind: &ServedKind) -> Self {
        if kind.namespaced {
            Self::Namespace
        } else if kind.kind.api_version == "v1" && kind.kind.kind == "Namespace" {
            Self::NamespaceItself
        } else {
            Self::Cluster
        }
    }

    /// The key `object` is filed under; `None` when it does not belong.
    fn of(self, object: &DynamicObject) -> Option<String> {
        match self {
            Self::OwnerUid => {
                let uid = object.labels().get(PARENT_UID_LABEL)?;
                let controller = object.owner_references().iter().find(|r| r.controller == Some(true))?;
                (&controller.uid == uid).then(|| uid.clone())
            }
            Self::Namespace => Some(object.namespace().unwrap_or_default()),
            Self::NamespaceItself => Some(object.name_any()),
            Self::Cluster => Some(String::new()),
        }
    }

    /// The key a parent in `namespace` reads related objects under.
    fn related_key(self, namespace: Option<&str>) -> String {
        match self {
            Self::Cluster => String::new(),
            _ => namespace.unwrap_or_default().to_owned(),
        }
    }
}

/// A write of the host's own to one object, as far as its watch goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnWrite {
    /// Sent, no answer yet. The watch may deliver the write's event before
    /// the answer comes: events meanwhile are held back here (their
    /// resourceVersions, and whether one was a delete) and judged when the
    /// answer says which resourceVersion the write made.
    InFlight { seen: Vec<String>, deleted: bool },
    /// Written with this resourceVersion; its event has not come yet.
    Written(String),
    /// Deleted by the host; the delete event has not come yet.
    Deleted,
}

/// How a write of the host's own ended (see [`ObjectIndex::end_write`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Applied; the object now has this resourceVersion.
    Applied(String),
    /// Deleted.
    Deleted,
    /// Refused, or no answer.
    Failed,
}

/// What one decorating field manager of the host owns on an object: the
/// keys of its entry in `managedFields`, with the object's values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecoratedFields {
    /// The field manager (`trellis/<plugin>/decorate/<parent uid>`).
    pub manager: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Field managers of the host's decorations start so.
pub const DECORATE_MANAGER_PREFIX: &str = "trellis/";
/// ... and hold this.
pub const DECORATE_MANAGER_MARK: &str = "/decorate/";

/// One cached object: its JSON text and what the host reads of it.
#[derive(Debug, Clone)]
pub struct CachedObject {
    /// Its kind (shared by every object of the cache).
    pub kind: Arc<KindRef>,
    /// Its namespace (`None` when cluster-scoped).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its labels: kept for related objects only (selectors read them).
    pub labels: BTreeMap<String, String>,
    /// What the host's decorations own on it (related objects only).
    pub decorated: Vec<DecoratedFields>,
    /// Its uid.
    pub uid: Option<String>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// The fingerprint the host put on it when it applied it.
    pub desired_hash: Option<String>,
    /// True when this is the state the host's own write produced (its echo),
    /// so it holds what was applied and nobody has changed it since.
    pub as_written: bool,
    /// The object as JSON (managedFields dropped, apiVersion and kind set).
    pub text: Arc<str>,
}

impl CachedObject {
    /// The object parsed.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// What `manager` owns on it, if anything.
    pub fn decorated_by(&self, manager: &str) -> Option<&DecoratedFields> {
        self.decorated.iter().find(|d| d.manager == manager)
    }
}

impl crate::runtime::Candidate for CachedObject {
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

/// The labels and annotations each of the host's decorating managers owns
/// on `object`, read from its `managedFields`.
fn decorated_fields(object: &DynamicObject) -> Vec<DecoratedFields> {
    let meta = &object.metadata;
    let keys = |fields: &Value, set: &str| -> Vec<String> {
        fields["f:metadata"][set]
            .as_object()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.strip_prefix("f:"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let values = |keys: Vec<String>, of: &Option<BTreeMap<String, String>>| -> BTreeMap<String, String> {
        keys.into_iter()
            .filter_map(|k| of.as_ref()?.get(&k).map(|v| (k, v.clone())))
            .collect()
    };
    meta.managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| {
            let manager = entry.manager.as_deref()?;
            if !manager.starts_with(DECORATE_MANAGER_PREFIX) || !manager.contains(DECORATE_MANAGER_MARK) {
                return None;
            }
            let fields = &entry.fields_v1.as_ref()?.0;
            Some(DecoratedFields {
                manager: manager.to_owned(),
                labels: values(keys(fields, "f:labels"), &meta.labels),
                annotations: values(keys(fields, "f:annotations"), &meta.annotations),
            })
        })
        .collect()
}

/// The objects under one key, by `namespace/name`.
type Bucket = BTreeMap<String, Arc<CachedObject>>;

/// Where each cached object is filed (`None`: seen, but not ours to read).
type KeyOf = HashMap<String, Option<String>>;

/// The objects of one cache, filed.
#[derive(Default)]
struct Files {
    buckets: HashMap<String, Bucket>,
    /// Where each object is filed, to move it when its key changes.
    key_of: KeyOf,
    /// The objects each decorating field manager owns fields of, by id.
    decorated: HashMap<String, BTreeSet<String>>,
}

#[derive(Default)]
struct State {
    files: Files,
    /// A relist in progress: the new state, swapped in when it completes.
    relist: Option<Files>,
    /// The resourceVersion each of the host's own writes produced, by
    /// object: the watch event of that write is an echo, not news.
    own_writes: HashMap<String, OwnWrite>,
}

/// A cache of one kind, indexed by an [`IndexKey`]. Cheap to clone.
#[derive(Clone)]
pub struct ObjectIndex {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Arc<KindRef>,
    key: IndexKey,
    state: RwLock<State>,
    ready: watch::Sender<bool>,
}

impl ObjectIndex {
    /// An empty cache of `kind`; not ready until its first list completes.
    pub fn new(kind: &ServedKind, key: IndexKey) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind: Arc::new(kind.kind.clone()),
                key,
                state: RwLock::new(State::default()),
                ready: watch::channel(false).0,
            }),
        }
    }

    /// Takes in one watch event. Returns whether it is news that should
    /// trigger a reconcile: not the echo of one of the host's own writes
    /// (see [`ObjectIndex::begin_write`]).
    pub fn apply(&self, event: &watcher::Event<DynamicObject>) -> bool {
        let mut state = self.inner.state.write().expect("index lock");
        match event {
            watcher::Event::Apply(object) => {
                let id = object_id(object);
                let rv = object.metadata.resource_version.clone().unwrap_or_default();
                let State { files, own_writes, .. } = &mut *state;
                let (news, as_written) = match own_writes.get_mut(&id) {
                    Some(OwnWrite::InFlight { seen, .. }) => {
                        seen.push(rv);
                        (false, false)
                    }
                    Some(OwnWrite::Written(written)) if *written == rv => {
                        own_writes.remove(&id);
                        (false, true)
                    }
                    _ => (true, false),
                };
                let filed = self
                    .inner
                    .key
                    .of(object)
                    .map(|key| (key, self.cached(object, as_written)));
                files.remove(&id);
                files.insert(id, filed);
                news
            }
            watcher::Event::Delete(object) => {
                let id = object_id(object);
                let State { files, own_writes, .. } = &mut *state;
                files.remove(&id);
                match own_writes.get_mut(&id) {
                    Some(OwnWrite::InFlight { deleted, .. }) => {
                        *deleted = true;
                        false
                    }
                    Some(OwnWrite::Deleted) => {
                        own_writes.remove(&id);
                        false
                    }
                    _ => {
                        own_writes.remove(&id);
                        true
                    }
                }
            }
            watcher::Event::Init => {
                state.relist = Some(Default::default());
                false
            }
            watcher::Event::InitApply(object) => {
                let filed = self.inner.key.of(object).map(|key| (key, self.cached(object, false)));
                if let Some(files) = state.relist.as_mut() {
                    files.insert(object_id(object), filed);
                }
                true
            }
            watcher::Event::InitDone => {
                if let Some(files) = state.relist.take() {
                    state.files = files;
                }
                drop(state);
                self.inner.ready.send_replace(true);
                false
            }
        }
    }

    /// [`Self::apply`], also returning the object as cached before and
    /// after the event (what a change of a related object was and is).
    pub fn apply_seen(
        &self,
        event: &watcher::Event<DynamicObject>,
    ) -> (bool, Option<Arc<CachedObject>>, Option<Arc<CachedObject>>) {
        let id = match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => object_id(o),
            watcher::Event::Init | watcher::Event::InitDone => return (self.apply(event), None, None),
        };
        let before = self.inner.state.read().expect("index lock").files.find(&id);
        let news = self.apply(event);
        let after = match event {
            watcher::Event::Apply(_) => self.inner.state.read().expect("index lock").files.find(&id),
            watcher::Event::InitApply(o) => self.inner.key.of(o).map(|_| self.cached(o, false)),
            _ => None,
        };
        (news, before, after)
    }

    /// Whether the host wrote `namespace/name` and its watch event has not
    /// arrived yet (so it is the host's even though the cache lacks it).
    pub fn was_written(&self, namespace: Option<&str>, name: &str) -> bool {
        let id = format!("{}/{name}", namespace.unwrap_or_default());
        let state = self.inner.state.read().expect("index lock");
        matches!(state.own_writes.get(&id), Some(OwnWrite::Written(_)))
    }

    /// Marks the start of a write (apply or delete) of `namespace/name` by
    /// the host: its watch events are held back until [`Self::end_write`].
    pub fn begin_write(&self, namespace: Option<&str>, name: &str) {
        let id = format!("{}/{name}", namespace.unwrap_or_default());
        let mut state = self.inner.state.write().expect("index lock");
        state.own_writes.insert(
            id,
            OwnWrite::InFlight {
                seen: Vec::new(),
                deleted: false,
            },
        );
    }

    /// Marks the end of a write begun with [`Self::begin_write`]: `outcome`
    /// is the resourceVersion an apply made, [`WriteOutcome::Deleted`] for
    /// a delete, [`WriteOutcome::Failed`] when the API refused. Returns
    /// whether an event held back meanwhile was news (somebody else's
    /// change), so the caller reconciles again.
    pub fn end_write(&self, namespace: Option<&str>, name: &str, outcome: WriteOutcome) -> bool {
        let id = format!("{}/{name}", namespace.unwrap_or_default());
        let mut state = self.inner.state.write().expect("index lock");
        let Some(OwnWrite::InFlight { seen, deleted }) = state.own_writes.remove(&id) else {
            return false;
        };
        match outcome {
            WriteOutcome::Applied(rv) => {
                let ours_seen = seen.contains(&rv);
                if !ours_seen {
                    state.own_writes.insert(id, OwnWrite::Written(rv.clone()));
                }
                deleted || seen.iter().any(|s| *s != rv)
            }
            WriteOutcome::Deleted => {
                if !deleted {
                    state.own_writes.insert(id, OwnWrite::Deleted);
                }
                !seen.is_empty()
            }
            WriteOutcome::Failed => deleted || !seen.is_empty(),
        }
    }

    /// The objects filed under `key`.
    fn get(&self, key: &str) -> Vec<Arc<CachedObject>> {
        let state = self.inner.state.read().expect("index lock");
        state
            .files
            .buckets
            .get(key)
            .map(|bucket| bucket.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every object filed, under any key.
    pub fn all(&self) -> Vec<Arc<CachedObject>> {
        let state = self.inner.state.read().expect("index lock");
        state.files.buckets.values().flat_map(|b| b.values().cloned()).collect()
    }

    /// The related objects in `namespace` (for the Namespace kind: the
    /// namespace itself; for another cluster-scoped kind: all of them).
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<CachedObject>> {
        self.get(&self.inner.key.related_key(Some(namespace)))
    }

    /// The object `namespace/name`, if cached and filed.
    pub fn object(&self, namespace: Option<&str>, name: &str) -> Option<Arc<CachedObject>> {
        let id = format!("{}/{name}", namespace.unwrap_or_default());
        let state = self.inner.state.read().expect("index lock");
        state.files.find(&id)
    }

    /// The objects `manager` owns decorations on.
    pub fn decorated_by(&self, manager: &str) -> Vec<Arc<CachedObject>> {
        let state = self.inner.state.read().expect("index lock");
        state
            .files
            .decorated
            .get(manager)
            .into_iter()
            .flatten()
            .filter_map(|id| state.files.find(id))
            .collect()
    }

    /// Whether `manager` owns decorations on any cached object.
    pub fn has_decorations_of(&self, manager: &str) -> bool {
        let state = self.inner.state.read().expect("index lock");
        state.files.decorated.contains_key(manager)
    }

    /// Notes what a decoration the host just applied left `manager`
    /// owning on `namespace/name`, until the object's watch event comes:
    /// so a parent deleted meanwhile still has it removed.
    pub fn note_decorated(&self, namespace: Option<&str>, name: &str, fields: DecoratedFields) {
        let id = format!("{}/{name}", namespace.unwrap_or_default());
        let mut state = self.inner.state.write().expect("index lock");
        let Some(Some(key)) = state.files.key_of.get(&id).cloned() else {
            return;
        };
        let Some(object) = state.files.find(&id) else {
            return;
        };
        let mut updated = (*object).clone();
        updated.decorated.retain(|d| d.manager != fields.manager);
        if !fields.labels.is_empty() || !fields.annotations.is_empty() {
            updated.decorated.push(fields);
        }
        state.files.remove(&id);
        state.files.insert(id, Some((key, Arc::new(updated))));
    }

    /// The related objects a parent in `namespace` may see.
    pub fn related_to(&self, namespace: Option<&str>) -> Vec<Arc<CachedObject>> {
        self.get(&self.inner.key.related_key(namespace))
    }

    /// The children owned (as controller) by the parent with `uid`.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<CachedObject>> {
        // Filed by the controller owner's uid: every object here is owned.
        self.get(uid)
    }

    /// Whether an object `namespace/name` is cached: `None` if not, else
    /// the key it is filed under (for children: the uid of the parent that
    /// owns it), `Some(None)` if it is cached but belongs to no key.
    pub fn key_of(&self, namespace: Option<&str>, name: &str) -> Option<Option<String>> {
        let id = format!("{}/{name}", namespace.unwrap_or_default());
        self.inner
            .state
            .read()
            .expect("index lock")
            .files
            .key_of
            .get(&id)
            .cloned()
    }

    /// Waits until the first list has completed.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    fn cached(&self, object: &DynamicObject, as_written: bool) -> Arc<CachedObject> {
        let meta = &object.metadata;
        // Children are found by owner; only related objects are selected
        // by label or decorated.
        let related = self.inner.key != IndexKey::OwnerUid;
        Arc::new(CachedObject {
            kind: self.inner.kind.clone(),
            namespace: meta.namespace.clone(),
            name: object.name_any(),
            labels: if related {
                meta.labels.clone().unwrap_or_default()
            } else {
                BTreeMap::new()
            },
            decorated: if related { decorated_fields(object) } else { Vec::new() },
            uid: meta.uid.clone(),
            deleting: meta.deletion_timestamp.is_some(),
            desired_hash: meta.annotations.as_ref().and_then(|a| a.get(DESIRED_HASH)).cloned(),
            as_written,
            text: object_text(object, &self.inner.kind).into(),
        })
    }
}

/// An object as the JSON a plugin is handed: `apiVersion` and `kind` set
/// (list items lack them), managedFields dropped (nothing reads them).
/// Written straight from the object, without building a `Value` first.
pub fn object_text(object: &DynamicObject, kind: &KindRef) -> String {
    /// The object's fields in the order the API server writes them.
    #[derive(serde::Serialize)]
    struct Handed<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        metadata: Cow<'a, ObjectMeta>,
        #[serde(flatten)]
        data: &'a Value,
    }
    let metadata = match &object.metadata.managed_fields {
        None => Cow::Borrowed(&object.metadata),
        Some(_) => Cow::Owned(ObjectMeta {
            managed_fields: None,
            ..object.metadata.clone()
        }),
    };
    let handed = Handed {
        api_version: &kind.api_version,
        kind: &kind.kind,
        metadata,
        data: &object.data,
    };
    serde_json::to_string(&handed).unwrap_or_default()
}

fn object_id(object: &DynamicObject) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

impl Files {
    fn insert(&mut self, id: String, filed: Option<(String, Arc<CachedObject>)>) {
        match filed {
            Some((key, object)) => {
                for d in &object.decorated {
                    self.decorated.entry(d.manager.clone()).or_default().insert(id.clone());
                }
                self.buckets.entry(key.clone()).or_default().insert(id.clone(), object);
                self.key_of.insert(id, Some(key));
            }
            None => {
                self.key_of.insert(id, None);
            }
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(Some(key)) = self.key_of.remove(id)
            && let Some(bucket) = self.buckets.get_mut(&key)
        {
            if let Some(object) = bucket.remove(id) {
                for d in &object.decorated {
                    if let Some(ids) = self.decorated.get_mut(&d.manager) {
                        ids.remove(id);
                        if ids.is_empty() {
                            self.decorated.remove(&d.manager);
                        }
                    }
                }
            }
            if bucket.is_empty() {
                self.buckets.remove(&key);
            }
        }
    }

    fn find(&self, id: &str) -> Option<Arc<CachedObject>> {
        let key = self.key_of.get(id)?.as_ref()?;
        self.buckets.get(key)?.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ApiResource;
    use kube::core::GroupVersionKind;
    use serde_json::json;

    fn kind(api_version: &str, kind: &str, namespaced: bool) -> ServedKind {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        ServedKind {
            kind: KindRef::new(api_version, kind),
            resource: ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)),
            namespaced,
        }
    }

    fn child(name: &str, label_uid: &str, owner_uid: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": name, "namespace": "ns",
                "labels": {PARENT_UID_LABEL: label_uid},
                "ownerReferences": [{"apiVersion": "x/v1", "kind": "P", "name": "p", "uid": owner_uid, "controller": true}],
                "managedFields": [{"manager": "m"}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn children_are_filed_by_their_controller_owner_and_move_when_it_changes() {
        let index = ObjectIndex::new(&kind("v1", "ConfigMap", true), IndexKey::OwnerUid);
        index.apply(&watcher::Event::Apply(child("a", "u1", "u1")));
        index.apply(&watcher::Event::Apply(child("b", "u1", "u1")));
        // A label that disagrees with the owner reference is not ours.
        index.apply(&watcher::Event::Apply(child("forged", "u1", "u9")));
        let owned = index.owned_by("u1");
        assert_eq!(owned.len(), 2);
        let first = owned[0].value();
        assert_eq!(first["kind"], "ConfigMap");
        assert!(first["metadata"].get("managedFields").is_none());
        assert_eq!(index.key_of(Some("ns"), "a"), Some(Some("u1".to_owned())));
        assert_eq!(index.key_of(Some("ns"), "forged"), Some(None), "seen, not filed");

        index.apply(&watcher::Event::Apply(child("a", "u2", "u2")));
        assert_eq!(index.owned_by("u1").len(), 1);
        assert_eq!(index.owned_by("u2").len(), 1);
        index.apply(&watcher::Event::Delete(child("b", "u1", "u1")));
        assert!(index.owned_by("u1").is_empty());
        assert_eq!(index.key_of(Some("ns"), "b"), None);
    }

    #[test]
    fn the_echo_of_an_own_write_is_no_news_but_a_later_change_and_a_delete_are() {
        let index = ObjectIndex::new(&kind("v1", "ConfigMap", true), IndexKey::OwnerUid);
        let mut object = child("a", "u1", "u1");
        object.metadata.resource_version = Some("7".into());
        index.begin_write(Some("ns"), "a");
        assert!(!index.end_write(Some("ns"), "a", WriteOutcome::Applied("7".into())));
        assert!(index.was_written(Some("ns"), "a"));
        assert!(!index.apply(&watcher::Event::Apply(object.clone())), "our own write");
        assert_eq!(index.owned_by("u1").len(), 1, "an echo still updates the cache");
        assert!(index.owned_by("u1")[0].as_written);
        object.metadata.resource_version = Some("8".into());
        assert!(
            index.apply(&watcher::Event::Apply(object.clone())),
            "somebody else's change"
        );
        assert!(
            index.apply(&watcher::Event::Delete(object.clone())),
            "somebody else's delete"
        );
        index.begin_write(Some("ns"), "a");
        assert!(!index.end_write(Some("ns"), "a", WriteOutcome::Deleted));
        assert!(!index.was_written(Some("ns"), "a"));
        assert!(!index.apply(&watcher::Event::Delete(object)), "our own prune");
    }

    #[test]
    fn events_during_a_write_are_judged_by_the_answer() {
        let index = ObjectIndex::new(&kind("v1", "ConfigMap", true), IndexKey::OwnerUid);
        let mut object = child("a", "u1", "u1");
        // The echo comes before the answer: held back, then known as ours.
        index.begin_write(Some("ns"), "a");
        object.metadata.resource_version = Some("7".into());
        assert!(!index.apply(&watcher::Event::Apply(object.clone())));
        assert!(!index.end_write(Some("ns"), "a", WriteOutcome::Applied("7".into())));
        assert!(!index.was_written(Some("ns"), "a"), "its echo has come");
        // Somebody else's change while ours is under way: news after all.
        index.begin_write(Some("ns"), "a");
        object.metadata.resource_version = Some("8".into());
        assert!(!index.apply(&watcher::Event::Apply(object.clone())));
        assert!(index.end_write(Some("ns"), "a", WriteOutcome::Applied("9".into())));
        // A refused write: what was held back is news.
        index.begin_write(Some("ns"), "a");
        assert!(!index.apply(&watcher::Event::Apply(object)));
        assert!(index.end_write(Some("ns"), "a", WriteOutcome::Failed));
    }

    #[test]
    fn a_relist_replaces_the_contents_when_it_completes() {
        let index = ObjectIndex::new(&kind("v1", "ConfigMap", true), IndexKey::OwnerUid);
        index.apply(&watcher::Event::Apply(child("gone", "u1", "u1")));
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(child("kept", "u1", "u1")));
        assert_eq!(
            index.owned_by("u1").len(),
            1,
            "the old state serves until the list completes"
        );
        assert_eq!(index.owned_by("u1")[0].name, "gone");
        index.apply(&watcher::Event::InitDone);
        let owned = index.owned_by("u1");
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].name, "kept");
    }

    #[test]
    fn related_namespaces_relate_to_the_parents_inside_them() {
        let namespaces = kind("v1", "Namespace", false);
        assert_eq!(IndexKey::for_related(&namespaces), IndexKey::NamespaceItself);
        assert_eq!(IndexKey::for_related(&kind("v1", "Node", false)), IndexKey::Cluster);
        assert_eq!(IndexKey::for_related(&kind("v1", "Secret", true)), IndexKey::Namespace);
        let index = ObjectIndex::new(&namespaces, IndexKey::NamespaceItself);
        for name in ["team-a", "team-b"] {
            let ns: DynamicObject =
                serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
                    .unwrap();
            index.apply(&watcher::Event::Apply(ns));
        }
        let seen = index.related_to(Some("team-a"));
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].name, "team-a");
    }
}
