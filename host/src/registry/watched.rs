//! The registration objects of one kind, kept by a watch instead of a LIST
//! on every sync: a reflector store fed in the background, which keeps the
//! last known objects across watch failures and knows when the kind's CRD
//! is not installed. Every change wakes the registry (`changed`), so a
//! registration takes effect at once, not at the next poll.

use super::declared::Declaration;
use futures::{FutureExt, StreamExt};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long the first sync waits for the first list of a registration kind.
const FIRST_LIST: Duration = Duration::from_secs(5);

/// The objects of one registration kind, as the last watch events left them.
pub struct Watched<K: kube::Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    /// True while the API answers that the kind is not served (no CRD).
    missing: Arc<AtomicBool>,
    /// Whether a sync has waited for the first list already (only the
    /// first one does: a watch that keeps failing must not stall every sync).
    waited: AtomicBool,
    task: JoinHandle<()>,
}

impl<K> Watched<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    /// Starts watching `api`; each change notifies `changed`.
    pub fn start(api: Api<K>, changed: Arc<Notify>) -> Self {
        let kind = K::kind(&()).into_owned();
        let writer = reflector::store::Writer::default();
        let store = writer.as_reader();
        let missing = Arc::new(AtomicBool::new(false));
        let flag = missing.clone();
        let events = watcher(api, watcher::Config::default()).default_backoff();
        let task = tokio::spawn(async move {
            let mut events = reflector::reflector(writer, events).boxed();
            while let Some(event) = events.next().await {
                match event {
                    // `Init` comes before every list, also one that fails.
                    Ok(watcher::Event::Init) => {}
                    Ok(_) => {
                        if flag.swap(false, Ordering::Relaxed) {
                            tracing::info!(%kind, "the CRD is installed: reading registrations of this kind");
                        }
                        changed.notify_one();
                    }
                    Err(watcher::Error::InitialListFailed(kube::Error::Api(status))) if status.code == 404 => {
                        if !flag.swap(true, Ordering::Relaxed) {
                            tracing::info!(%kind, "the CRD is not installed: no registrations of this kind");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%kind, error = %e, "watching registrations failed; keeping the last known")
                    }
                }
            }
        });
        Self {
            store,
            missing,
            waited: AtomicBool::new(false),
            task,
        }
    }

    /// True once the first list has arrived (the store keeps the last known
    /// objects from then on).
    fn listed(&self) -> bool {
        self.store.wait_until_ready().now_or_never().is_some()
    }

    /// The objects, sorted by namespace and name; empty while the kind's
    /// CRD is missing. The first call waits (a few seconds at most) for the
    /// first list, so no registration is judged without them.
    pub async fn objects(&self) -> Vec<Arc<K>> {
        let started = Instant::now();
        let first = !self.waited.swap(true, Ordering::Relaxed);
        while first && !self.listed() && started.elapsed() < FIRST_LIST {
            if self.missing.load(Ordering::Relaxed) {
                return Vec::new();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.missing.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut items = self.store.state();
        items.sort_by_key(|o| (o.meta().namespace.clone(), o.meta().name.clone()));
        items
    }

    /// The objects as declarations, in the order of [`Self::objects`].
    pub async fn declarations(&self) -> Vec<Declaration>
    where
        for<'a> Declaration: From<&'a K>,
    {
        self.objects().await.iter().map(|o| Declaration::from(&**o)).collect()
    }
}

impl<K: kube::Resource<DynamicType = ()> + 'static> Drop for Watched<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
