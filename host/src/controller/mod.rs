//! The controllers: one per registered parent kind, each delegating its
//! reconciles to the kind's plugin.
//!
//! [`KindController::start`] resolves the kinds through discovery, starts
//! watches of the owned children (selected by the plugin's label) and the
//! related kinds into [`index::ObjectIndex`] caches, and runs a kube-runtime
//! `Controller` whose reconcile is [`reconcile::reconcile`]. A new module for
//! the same kinds is swapped in with [`KindController::update`]; reconciles
//! already running finish on the module they started with.
//!
//! What triggers a reconcile: a parent change other than to its status (the
//! host's own status writes are not news), any change of an owned child
//! except the echo of the host's own write, and changes of related objects
//! that concern the parent (see [`related::concerned`]: what its `related`
//! answer picks, or, without one, objects of its namespace; a Namespace
//! relates to the parents in it).

mod apply;
mod backoff;
pub mod children;
mod decorate;
mod event_rate;
mod gate;
mod identity;
mod index;
mod kinds;
mod names;
mod parent;
mod reconcile;
mod related;
mod release;
mod sharded;
mod target;
mod triggers;
use triggers::{RelatedTriggers, indexed, related_triggers};

pub use apply::finalizer_patch;
pub use gate::{CallGate, GateError, GateLimits};
pub use identity::{ALLOWED_REGISTRATIONS, Identity, PLUGIN_ACCOUNT_PREFIX, PluginAccounts};
pub use kinds::{KindError, ServedKind, resolve};
pub use target::AdmissionTarget;

use crate::crd::FailurePolicy;
use crate::metrics::Metrics;
use crate::runtime::{KindRef, Plugin};
use backoff::Backoff;
use futures::{StreamExt, TryStreamExt};
use index::{IndexKey, ObjectIndex};
use kube::api::{Api, DynamicObject};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Client, ResourceExt};
use names::ForeignNames;
use parent::ParentObject;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The finalizer the host puts on parents whose plugin asked for one.
pub const FINALIZER: &str = "trellis.dev/finalizer";

/// A plugin registered for a parent kind, with everything a reconcile needs.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registration's name (the plugin's name, or its ReconcilerPlugin).
    pub name: String,
    /// Where it came from, for messages (`file msdeploy.wasm`, ...).
    pub source: String,
    /// The loaded module, with its limits.
    pub plugin: Plugin,
    /// The OCI artifact the module was pulled from, pinned by its
    /// manifest's digest (`registry/repository@sha256:…`), if it was.
    pub artifact: Option<String>,
    /// The parent kind.
    pub parent: KindRef,
    /// The kinds it may emit.
    pub children: Vec<KindRef>,
    /// The kinds it may read.
    pub related: Vec<KindRef>,
    /// The config handed to every call.
    pub config: Option<Value>,
    /// Whether parents get a finalizer.
    pub finalizer: bool,
    /// The declaration (`name` or `namespace/name`) it comes from; `None`
    /// for a file registered from its own `info`.
    pub declaration: Option<String>,
    /// The ServiceAccount it acts as; `None` only where the host's client
    /// is the plugins' identity ([`PluginAccounts::HostClient`]).
    pub identity: Option<Identity>,
    /// The namespace it is confined to: a tenant's `ReconcilerPlugin`.
    pub tenant_namespace: Option<String>,
    /// Its reconciles at once, if it asks for fewer than the host's limit.
    pub max_concurrent_reconciles: Option<u16>,
    /// How its webhooks answer when the plugin fails (trap, timeout).
    pub failure_policy: FailurePolicy,
}

impl Registration {
    /// The server-side apply field manager of this plugin.
    pub fn field_manager(&self) -> String {
        format!("trellis/{}", self.name)
    }

    /// True when `other` needs the same watches (so a swap is enough).
    pub fn same_kinds(&self, other: &Registration) -> bool {
        self.name == other.name
            && self.identity == other.identity
            && self.tenant_namespace == other.tenant_namespace
            && self.parent == other.parent
            && self.children == other.children
            && self.related == other.related
            && self.max_concurrent_reconciles == other.max_concurrent_reconciles
    }
}

/// Settings shared by every controller of the host.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub metrics: Metrics,
    pub reporter: Reporter,
    /// Reconciles of one kind running at once.
    pub concurrency: u16,
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// The configuration `client` was made from, to act as the plugins'
    /// ServiceAccounts; without it only [`PluginAccounts::HostClient`]
    /// registrations can start.
    pub client_config: Option<kube::Config>,
    /// A tenant's ServiceAccount serves only the registrations its
    /// [`ALLOWED_REGISTRATIONS`] annotation names.
    pub service_account_consent: bool,
    /// Admits every plugin call: slots in turn, and the memory budget.
    pub calls: CallGate,
    /// With sharding, the shards this replica holds: only their parents are
    /// reconciled here. `None`: every parent.
    pub ownership: Option<Arc<crate::shard::Ownership>>,
}

impl Shared {
    /// An API for `kind` in the watched namespace (or cluster-wide).
    fn watch_api(&self, kind: &ServedKind) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) if kind.namespaced => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            _ => Api::all_with(self.client.clone(), &kind.resource),
        }
    }
}

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Kind(#[from] KindError),
    #[error("{kind} is cluster-scoped; children must be namespaced like their parent")]
    ClusterScopedChild { kind: KindRef },
    #[error("{kind} is cluster-scoped; a tenant's plugin only touches namespaced kinds of its namespace")]
    ClusterScopedForTenant { kind: KindRef },
    #[error(
        "{user} may not {verb} {kind} {place}: grant it to the ServiceAccount (deploy/rbac has a ClusterRole and binding per bundled plugin), or narrow the registration"
    )]
    Forbidden {
        user: String,
        verb: &'static str,
        kind: KindRef,
        place: String,
    },
    #[error(
        "{identity} does not exist: create it with the rights the plugin needs (deploy/rbac has one per bundled plugin)"
    )]
    NoServiceAccount { identity: Identity },
    #[error(
        "{identity} does not allow ReconcilerPlugin {registration} to act as it: the host requires consent, so its annotation trellis.dev/allowed-registrations must name the registration (or be \"*\")"
    )]
    NoConsent { identity: Identity, registration: String },
    #[error("the host may not act as {identity}: {message}")]
    CannotImpersonate { identity: Identity, message: String },
    #[error("the host was started without its client configuration, so it cannot act as a plugin's ServiceAccount")]
    NoImpersonation,
    #[error("the API refused: {0}")]
    Client(kube::Error),
}

impl ControllerError {
    /// The reason shown on the registration's `Ready` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kind(_) => "KindNotServed",
            Self::ClusterScopedChild { .. } | Self::ClusterScopedForTenant { .. } => "ClusterScopedKind",
            Self::Forbidden { .. } => "Forbidden",
            Self::NoServiceAccount { .. } => "ServiceAccountNotFound",
            Self::NoConsent { .. } => "ServiceAccountNotAllowed",
            Self::CannotImpersonate { .. } | Self::NoImpersonation => "NoImpersonation",
            Self::Client(_) => "ControllerNotStarted",
        }
    }
}

/// What one reconcile of a kind can use.
pub(crate) struct Context {
    shared: Shared,
    registration: RwLock<Arc<Registration>>,
    parent: ServedKind,
    children: Vec<ChildKind>,
    related: Vec<(ServedKind, ObjectIndex)>,
    backoff: Backoff,
    recorder: Recorder,
    /// Try every write as a server-side dry run first, so a write the API
    /// refuses (RBAC, admission) leaves nothing half-applied (tenants).
    dry_run_first: bool,
    /// The status last written per parent uid, until the parent cache shows
    /// it (see [`WrittenStatus`]).
    written_status: Arc<Mutex<HashMap<String, WrittenStatus>>>,
    /// Events written per parent, rate-limited.
    event_rate: event_rate::EventRate,
    /// Each parent's `related` answer (see [`related::Selections`]).
    selections: related::Selections,
    /// The parent cache (what `default-related` is handed).
    parents: reflector::Store<ParentObject>,
    /// With sharding: under which grant of its shard each parent was last
    /// read fresh.
    fresh_reads: Arc<sharded::FreshReads>,
}

/// A kind the plugin emits: its cache, and the names other objects of it take.
pub(crate) struct ChildKind {
    served: ServedKind,
    index: ObjectIndex,
    foreign: ForeignNames,
}

/// A status the host wrote, remembered until the parent cache catches up,
/// so a reconcile that starts before the watch delivers the write neither
/// writes the same status again nor restamps its transition times.
#[derive(Debug, Clone)]
pub(crate) struct WrittenStatus {
    /// The parent's resourceVersion the status was computed from.
    pub based_on: String,
    /// What was written, as JSON text (a few hundred bytes, where the
    /// parsed value would take several KiB per parent).
    pub status: String,
}

impl Context {
    fn registration(&self) -> Arc<Registration> {
        self.registration.read().expect("registration lock").clone()
    }

    /// Waits until every child and related cache has had its first list:
    /// reconciling before would see no children. (The caches fill while
    /// the controller runs, so this cannot be awaited before it starts.)
    async fn caches_ready(&self) {
        for child in &self.children {
            child.index.wait_until_ready().await;
            child.foreign.wait_until_ready().await;
        }
        for (_, index) in &self.related {
            index.wait_until_ready().await;
        }
    }

    /// The child kind `kind`, if the plugin may emit it.
    fn child_kind(&self, kind: &KindRef) -> Option<&ChildKind> {
        self.children.iter().find(|c| c.served.kind == *kind)
    }
}

/// A running controller for one parent kind.
pub struct KindController {
    context: Arc<Context>,
    task: JoinHandle<()>,
    /// The watches of foreign names, stopped with the controller.
    name_watches: Vec<JoinHandle<()>>,
    /// Asks for a reconcile of every parent (after a module swap).
    reconcile_all: tokio::sync::mpsc::UnboundedSender<()>,
    /// Starts a graceful shutdown: no new reconciles, running ones finish.
    graceful: tokio::sync::watch::Sender<bool>,
}

impl KindController {
    /// Resolves the kinds and starts watching and reconciling.
    pub async fn start(shared: Shared, registration: Registration) -> Result<Self, ControllerError> {
        // Discovery and events as the host; everything else as the plugin's identity.
        let client = shared.client.clone();
        let recorder = Recorder::new(client.clone(), shared.reporter.clone());
        let parent = resolve(&client, &registration.parent).await?;
        let shared = match &registration.identity {
            Some(identity) => {
                let mut kinds = vec![parent.clone()];
                for kind in registration.children.iter().chain(&registration.related) {
                    kinds.push(resolve(&client, kind).await?);
                }
                let acting = shared.acting_as(identity, registration.tenant_namespace.as_deref())?;
                let tenant = registration.tenant_namespace.is_some();
                // A tenant's declaration key is `namespace/name`.
                let consent_of = registration
                    .declaration
                    .as_deref()
                    .and_then(|key| key.split_once('/'))
                    .map(|(_, name)| name)
                    .filter(|_| tenant && shared.service_account_consent);
                let kinds: Vec<&ServedKind> = kinds.iter().collect();
                identity::check_identity(&shared, &acting, identity, tenant, consent_of, &kinds).await?;
                acting
            }
            None => shared,
        };
        let selector = format!("{}={}", children::PLUGIN_LABEL, registration.name);

        let parents_writer = reflector::store::Writer::new(parent.resource.clone());
        let parents = parents_writer.as_reader();
        let written_status = Arc::new(Mutex::new(HashMap::new()));
        let parent_kind = parent.kind.clone();
        let forget_written = written_status.clone();
        let selections = related::Selections::default();
        let forget_selection = selections.clone();
        let fresh_reads = Arc::new(sharded::FreshReads::default());
        let forget_fresh_read = fresh_reads.clone();
        let parent_events = watcher(shared.watch_api(&parent), watcher::Config::default())
            .default_backoff()
            .modify(|object| object.metadata.managed_fields = None)
            .map_ok(move |event| {
                forget_caught_up(&forget_written, &event);
                if let watcher::Event::Delete(gone) = &event {
                    let key = related::parent_key(gone.metadata.namespace.as_deref(), &gone.name_any());
                    forget_selection.write().expect("selections lock").remove(&key);
                    forget_fresh_read.forget(&key);
                }
                parent::event(event, &parent_kind)
            });
        let parent_changes = reflector::reflector(parents_writer, parent_events)
            .applied_objects()
            .predicate_filter(|p: &ParentObject| Some(p.change), Default::default());
        let mut controller = Controller::for_stream_with(parent_changes, parents.clone(), parent.resource.clone());

        let mut child_kinds = Vec::new();
        let mut name_watches = Vec::new();
        for kind in &registration.children {
            let served = resolve(&client, kind).await?;
            if !served.namespaced && parent.namespaced {
                return Err(ControllerError::ClusterScopedChild { kind: kind.clone() });
            }
            let index = ObjectIndex::new(&served, IndexKey::OwnerUid);
            let config = watcher::Config::default().labels(&selector);
            let stream = indexed(&shared, &served, config, index.clone());
            controller = controller.owns_stream_with(stream, served.resource.clone());
            let (foreign, watch) = ForeignNames::watch(
                shared.client.clone(),
                &served,
                shared.namespace.as_deref(),
                &registration.name,
            );
            name_watches.push(watch);
            child_kinds.push(ChildKind { served, index, foreign });
        }
        let mut related_indexes = Vec::new();
        for kind in &registration.related {
            let served = resolve(&client, kind).await?;
            let key = IndexKey::for_related(&served);
            let index = ObjectIndex::new(&served, key);
            related_indexes.push((served, index));
        }
        let namespaces = related_indexes
            .iter()
            .find(|(served, _)| related::is_namespace_kind(&served.kind))
            .map(|(_, index)| index.clone());
        for (served, index) in &related_indexes {
            let key = IndexKey::for_related(served);
            let config = match (key, &shared.namespace) {
                // One namespace watched: its own Namespace object is all a parent can see.
                (IndexKey::NamespaceItself, Some(ns)) => {
                    watcher::Config::default().fields(&format!("metadata.name={ns}"))
                }
                _ => watcher::Config::default(),
            };
            let concerns = RelatedTriggers {
                key,
                parents: parents.clone(),
                parent_resource: parent.resource.clone(),
                selections: selections.clone(),
                namespaces: namespaces.clone(),
            };
            controller = controller.reconcile_on(related_triggers(&shared, served, config, index.clone(), concerns));
        }

        if let Some(ownership) = &shared.ownership {
            controller = controller.reconcile_on(sharded::granted_parents(
                ownership.clone(),
                parents.clone(),
                parent.resource.clone(),
            ));
        }

        let name = registration.name.clone();
        let context = Arc::new(Context {
            recorder,
            dry_run_first: registration.tenant_namespace.is_some(),
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(300)),
            registration: RwLock::new(Arc::new(registration)),
            parent,
            children: child_kinds,
            related: related_indexes,
            shared,
            written_status,
            event_rate: event_rate::EventRate::default(),
            selections: selections.clone(),
            parents: parents.clone(),
            fresh_reads,
        });
        // Each plugin has its own queue and its own share of workers: one
        // plugin's slow or failing reconciles never hold another's.
        let concurrency = context
            .registration()
            .max_concurrent_reconciles
            .map_or(context.shared.concurrency, |c| c.min(context.shared.concurrency));
        let ctx = context.clone();
        let (graceful, mut shutting_down) = tokio::sync::watch::channel(false);
        let (reconcile_all, requests) = tokio::sync::mpsc::unbounded_channel();
        let controller = controller.reconcile_all_on(futures::stream::unfold(requests, |mut requests| async move {
            requests.recv().await.map(|()| ((), requests))
        }));
        let counting = context.shared.ownership.clone().map(|ownership| {
            let counting =
                sharded::count_parents(ownership, parents.clone(), context.shared.metrics.clone(), name.clone());
            sharded::AbortOnDrop(tokio::spawn(counting))
        });
        let task = tokio::spawn(async move {
            // Counting parents per shard stops with the controller.
            let _counting = counting;
            tracing::info!(plugin = %name, "controller started");
            controller
                .with_config(controller::Config::default().concurrency(concurrency))
                .graceful_shutdown_on(async move {
                    let _ = shutting_down.changed().await;
                })
                .run(reconcile::reconcile, reconcile::error_policy, ctx)
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "controller event");
                    }
                })
                .await;
        });
        Ok(Self {
            context,
            task,
            name_watches,
            reconcile_all,
            graceful,
        })
    }

    /// Swaps in a new module or config for the same kinds and reconciles
    /// every parent with it; reconciles already running finish on the old one.
    pub fn update(&self, registration: Registration) {
        *self.context.registration.write().expect("registration lock") = Arc::new(registration);
        let _ = self.reconcile_all.send(());
    }

    /// The registration in force.
    pub fn registration(&self) -> Arc<Registration> {
        self.context.registration()
    }

    /// The one namespace the host watches, if it watches one.
    pub fn watched_namespace(&self) -> Option<String> {
        self.context.shared.namespace.clone()
    }

    /// What the admission webhooks need of this controller.
    pub fn admission_target(&self) -> AdmissionTarget {
        AdmissionTarget::new(self.context.clone())
    }

    /// Stops watching and reconciling at once (reconciles in flight are
    /// dropped at their next await).
    pub fn stop(self) {
        drop(self);
    }

    /// Stops gracefully: no new reconciles start, and those running finish
    /// their writes, for at most `within`; then stops.
    pub async fn shut_down(mut self, within: Duration) {
        let _ = self.graceful.send(true);
        let name = self.context.registration().name.clone();
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            tracing::warn!(plugin = %name, within = ?within, "reconciles still running at shutdown: stopped");
        }
    }
}

impl Drop for KindController {
    fn drop(&mut self) {
        self.task.abort();
        for watch in &self.name_watches {
            watch.abort();
        }
    }
}

/// Forgets the statuses the host wrote that the parent cache now shows:
/// any later event of the parent carries the write (or a newer state).
fn forget_caught_up(written: &Mutex<HashMap<String, WrittenStatus>>, event: &watcher::Event<DynamicObject>) {
    let (watcher::Event::Apply(object) | watcher::Event::InitApply(object) | watcher::Event::Delete(object)) = event
    else {
        return;
    };
    let Some(uid) = &object.metadata.uid else {
        return;
    };
    let mut written = written.lock().expect("status lock");
    let caught_up = match (written.get(uid), event) {
        (None, _) => false,
        (Some(_), watcher::Event::Delete(_)) => true,
        (Some(w), _) => object.metadata.resource_version.as_deref() != Some(w.based_on.as_str()),
    };
    if caught_up {
        written.remove(uid);
    }
}
