//! The names in use by objects of a child kind that are not the plugin's.
//!
//! The host never takes over an object it does not own. A desired child
//! that is not in the plugin's cache is usually new, and asking the API
//! first whether somebody else already has its name would cost one GET per
//! child created. Instead a metadata-only watch keeps the names of every
//! other object of the kind (those without the plugin's label) in the
//! watched scope: a child whose name is not among them, nor in the plugin's
//! cache, is created directly; only a name that is taken is read first.
//! (The read had the same window as the watch: an object created between
//! the check and the write.)

use super::ServedKind;
use super::children::PLUGIN_LABEL;
use futures::StreamExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The names of a kind's objects that are not the plugin's. Cheap to clone.
#[derive(Clone)]
pub struct ForeignNames {
    inner: Arc<Inner>,
}

struct Inner {
    names: RwLock<Names>,
    ready: watch::Sender<bool>,
}

#[derive(Default)]
struct Names {
    current: HashSet<String>,
    relist: Option<HashSet<String>>,
}

impl ForeignNames {
    /// Starts watching the metadata of `kind`'s objects without the label
    /// of `plugin`, in `namespace` (all namespaces when `None`); the task
    /// stops when the handle is aborted.
    pub fn watch(client: Client, kind: &ServedKind, namespace: Option<&str>, plugin: &str) -> (Self, JoinHandle<()>) {
        let api: Api<PartialObjectMeta<kube::api::DynamicObject>> = match namespace {
            Some(ns) if kind.namespaced => Api::namespaced_with(client, ns, &kind.resource),
            _ => Api::all_with(client, &kind.resource),
        };
        let config = watcher::Config::default().labels(&format!("{PLUGIN_LABEL}!={plugin}"));
        let names = Self {
            inner: Arc::new(Inner {
                names: RwLock::default(),
                ready: watch::channel(false).0,
            }),
        };
        let feed = names.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => feed.apply(&event),
                    Err(e) => tracing::debug!(error = %e, "watching the names of other objects"),
                }
            }
        });
        (names, task)
    }

    fn apply<K: kube::Resource>(&self, event: &watcher::Event<K>) {
        let id = |object: &K| format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
        let mut names = self.inner.names.write().expect("names lock");
        match event {
            watcher::Event::Apply(object) => {
                names.current.insert(id(object));
            }
            watcher::Event::Delete(object) => {
                names.current.remove(&id(object));
            }
            watcher::Event::Init => names.relist = Some(HashSet::new()),
            watcher::Event::InitApply(object) => {
                let id = id(object);
                if let Some(relist) = names.relist.as_mut() {
                    relist.insert(id);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = names.relist.take() {
                    names.current = relist;
                }
                drop(names);
                self.inner.ready.send_replace(true);
            }
        }
    }

    /// Whether an object `namespace/name` of the kind exists that is not
    /// the plugin's.
    pub fn contains(&self, namespace: Option<&str>, name: &str) -> bool {
        let id = format!("{}/{name}", namespace.unwrap_or_default());
        self.inner.names.read().expect("names lock").current.contains(&id)
    }

    /// Whether the first list has completed.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until the first list has completed.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;
    use serde_json::json;

    fn object(name: &str) -> DynamicObject {
        serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}),
        )
        .unwrap()
    }

    #[test]
    fn names_follow_the_watch_and_a_relist_replaces_them() {
        let names = ForeignNames {
            inner: Arc::new(Inner {
                names: RwLock::default(),
                ready: watch::channel(false).0,
            }),
        };
        names.apply(&watcher::Event::Apply(object("a")));
        names.apply(&watcher::Event::Apply(object("b")));
        names.apply(&watcher::Event::Delete(object("b")));
        assert!(names.contains(Some("ns"), "a"));
        assert!(!names.contains(Some("ns"), "b"));
        assert!(!names.contains(Some("other"), "a"));
        assert!(!names.is_ready());
        names.apply(&watcher::Event::<DynamicObject>::Init);
        names.apply(&watcher::Event::InitApply(object("c")));
        names.apply(&watcher::Event::<DynamicObject>::InitDone);
        assert!(names.is_ready());
        assert!(names.contains(Some("ns"), "c"));
        assert!(!names.contains(Some("ns"), "a"), "gone in the relist");
    }
}
