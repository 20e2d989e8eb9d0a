//! The watches of a controller's children and related kinds: each feeds
//! its cache and yields the parents whose reconcile a change asks for (the
//! echoes of the host's own writes left out).

use super::index::{self, IndexKey, ObjectIndex};
use super::kinds::ServedKind;
use super::parent::ParentObject;
use super::{Shared, related};
use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};

/// A watch of `kind` feeding `index`, as the stream of objects whose changes
/// should trigger a reconcile (the echoes of the host's own writes left out).
pub(super) fn indexed(
    shared: &Shared,
    kind: &ServedKind,
    config: watcher::Config,
    index: ObjectIndex,
) -> impl futures::Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static {
    watcher(shared.watch_api(kind), config)
        .default_backoff()
        // Nothing reads them; without them the cached text borrows the metadata.
        .modify(|object| object.metadata.managed_fields = None)
        .filter_map(move |event| {
            let trigger = match event {
                Ok(event) => {
                    let news = index.apply(&event);
                    match event {
                        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) if news => {
                            Some(Ok(o))
                        }
                        _ => None,
                    }
                }
                Err(e) => Some(Err(e)),
            };
            std::future::ready(trigger)
        })
}

/// What a related watch needs to tell which parents a change concerns.
pub(super) struct RelatedTriggers {
    pub(super) key: IndexKey,
    pub(super) parents: reflector::Store<ParentObject>,
    pub(super) parent_resource: kube::api::ApiResource,
    pub(super) selections: related::Selections,
    /// The cache of Namespaces, when they are a related kind.
    pub(super) namespaces: Option<ObjectIndex>,
}

impl RelatedTriggers {
    /// The parents a change (`before` and `after`) concerns.
    fn parents(
        &self,
        before: Option<&index::CachedObject>,
        after: Option<&index::CachedObject>,
    ) -> Vec<ObjectRef<ParentObject>> {
        let selections = self.selections.read().expect("selections lock");
        let namespace_labels = |ns: &str| {
            self.namespaces
                .as_ref()
                .and_then(|index| index.object(None, ns))
                .map(|o| o.labels.clone())
        };
        self.parents
            .state()
            .into_iter()
            .filter(|p| {
                let namespace = p.metadata.namespace.as_deref();
                let key = related::parent_key(namespace, p.metadata.name.as_deref().unwrap_or_default());
                let seen = related::ParentSeen {
                    namespace,
                    selection: selections.get(&key).map(|s| &s.answer),
                };
                related::concerned(&seen, self.key, before, after, &namespace_labels)
            })
            .map(|p| ObjectRef::from_obj_with(&*p, self.parent_resource.clone()))
            .collect()
    }
}

/// A watch of a related `kind` feeding `index`, as the stream of parents
/// to reconcile for its changes (the echoes of the host's own writes, its
/// decorations, left out). `managedFields` are read (what the host's
/// decorations own) before the cache drops them.
pub(super) fn related_triggers(
    shared: &Shared,
    kind: &ServedKind,
    config: watcher::Config,
    index: ObjectIndex,
    concerns: RelatedTriggers,
) -> impl futures::Stream<Item = ObjectRef<ParentObject>> + Send + 'static {
    let kind_name = kind.kind.clone();
    watcher(shared.watch_api(kind), config)
        .default_backoff()
        .filter_map(move |event| {
            let parents = match event {
                Ok(event) => {
                    let (news, before, after) = index.apply_seen(&event);
                    if news {
                        concerns.parents(before.as_deref(), after.as_deref())
                    } else {
                        Vec::new()
                    }
                }
                Err(e) => {
                    tracing::debug!(kind = %kind_name, error = %e, "related watch");
                    Vec::new()
                }
            };
            std::future::ready(Some(futures::stream::iter(parents)))
        })
        .flatten()
}
