//! The observed children, indexed by the uid of their controller owner.
//!
//! Each child kind's watch events pass through [`KindIndex::observe`] on
//! their way to the controller, so a reconcile finds a parent's children
//! with one map lookup per kind instead of scanning every cached object.
//! Objects are kept as JSON (apiVersion and kind set) ready to hand to the
//! plugin; objects without a controller ownerReference are not kept.

use crate::kinds::Kind;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// The children of every kind, by owner uid.
pub struct Index {
    kinds: Vec<Arc<KindIndex>>,
}

impl Index {
    /// An empty index for `kinds` child kinds.
    pub fn new(kinds: usize) -> Self {
        Self {
            kinds: (0..kinds).map(|_| Arc::new(KindIndex::default())).collect(),
        }
    }

    /// One handle per kind, in the order the kinds were given.
    pub fn handles(&self) -> Vec<Arc<KindIndex>> {
        self.kinds.clone()
    }

    /// Waits until every kind has had its first list.
    pub async fn ready(&self) {
        for kind in &self.kinds {
            let mut ready = kind.ready.subscribe();
            let _ = ready.wait_for(|ready| *ready).await;
        }
    }

    /// The children whose controller owner has `uid`, every kind.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<Value>> {
        let mut out = Vec::new();
        for kind in &self.kinds {
            let state = kind.state.read().expect("index lock");
            if let Some(children) = state.by_owner.get(uid) {
                out.extend(children.values().cloned());
            }
        }
        out
    }
}

/// The index of one child kind.
pub struct KindIndex {
    state: RwLock<State>,
    ready: watch::Sender<bool>,
}

impl Default for KindIndex {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            ready: watch::Sender::new(false),
        }
    }
}

/// One indexed object: its key, its controller owner's uid, its JSON.
type Entry = (String, Option<String>, Arc<Value>);

#[derive(Default)]
struct State {
    /// Owner uid -> `namespace/name` -> the object.
    by_owner: HashMap<String, HashMap<String, Arc<Value>>>,
    /// `namespace/name` -> owner uid, to move or drop an object.
    owners: HashMap<String, String>,
    /// Objects of a (re)list in progress; swapped in when it is done.
    relist: Option<Vec<Entry>>,
}

impl State {
    fn remove(&mut self, key: &str) {
        if let Some(owner) = self.owners.remove(key)
            && let Some(children) = self.by_owner.get_mut(&owner)
        {
            children.remove(key);
            if children.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }

    fn insert(&mut self, key: String, owner: Option<String>, object: Arc<Value>) {
        self.remove(&key);
        if let Some(owner) = owner {
            self.owners.insert(key.clone(), owner.clone());
            self.by_owner.entry(owner).or_default().insert(key, object);
        }
    }
}

impl KindIndex {
    /// Takes in one watch event of objects of `kind`.
    pub fn observe(&self, event: &Event<DynamicObject>, kind: &Kind) {
        let mut state = self.state.write().expect("index lock");
        match event {
            Event::Init => state.relist = Some(Vec::new()),
            Event::InitApply(object) => {
                let (key, owner, value) = entry(object, kind);
                match state.relist.as_mut() {
                    Some(relist) => relist.push((key, owner, value)),
                    None => state.insert(key, owner, value),
                }
            }
            Event::InitDone => {
                let relist = state.relist.take().unwrap_or_default();
                state.by_owner.clear();
                state.owners.clear();
                for (key, owner, value) in relist {
                    state.insert(key, owner, value);
                }
                drop(state);
                self.ready.send_replace(true);
            }
            Event::Apply(object) => {
                let (key, owner, value) = entry(object, kind);
                state.insert(key, owner, value);
            }
            Event::Delete(object) => state.remove(&key_of(object)),
        }
    }
}

fn key_of(object: &DynamicObject) -> String {
    format!(
        "{}/{}",
        object.metadata.namespace.as_deref().unwrap_or_default(),
        object.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The key, the controller owner's uid and the JSON of an object.
fn entry(object: &DynamicObject, kind: &Kind) -> Entry {
    let owner = object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone());
    (key_of(object), owner, Arc::new(kind.to_json(object)))
}
