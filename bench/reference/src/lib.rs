//! `trellis-reference`: a hand-written kube-rs controller for
//! `custom.ops/v1` `MicroServiceDeploy`, the yardstick the scale benchmark
//! (`host/benches/scale/`) measures the Trellis host against.
//!
//! It makes the same decisions as the host serving `msdeploy.wasm`, without
//! WebAssembly: the msdeploy plugin crate is linked as an ordinary Rust
//! library and its [`Reconciler::reconcile`](trellis_sdk::Reconciler::reconcile)
//! is called natively. Around it, the discipline of a lean controller, the
//! same as the host's:
//! - reflector caches (managedFields dropped) of the parents and of every
//!   child kind the plugin emits, the children selected by the label
//!   [`MANAGED_BY`]; a kube-runtime `Controller` that `owns` the child kinds
//!   and, when the plugin reads the Namespace, watches the parent's one; a
//!   parent triggers a reconcile when its generation changes (not on the
//!   controller's own status writes);
//! - the observed children of a parent come from an index keyed by the
//!   parent's uid ([`index`]), not from a scan of the caches;
//! - desired children are server-side applied (field manager
//!   [`FIELD_MANAGER`], forced) with a controller ownerReference to the
//!   parent, and skipped when the cached copy already holds every desired
//!   field and the desired fingerprint did not change; no GET before an
//!   apply ([`write`]);
//! - owned children no longer desired are deleted with a uid precondition;
//! - the status (the plugin's, its conditions with stable transition times,
//!   `observedGeneration`) is applied to the status subresource only when
//!   the parent does not show it already ([`status`]), nor was written by
//!   this process for the same generation while the parent cache lags: one
//!   status write per generation while the status does not change;
//! - at most `concurrency` reconciles at once (16, as `trellis run`).
//!
//! `/metrics` counts reconciles and writes ([`metrics`]).

pub mod index;
pub mod kinds;
pub mod metrics;
mod reconcile;
pub mod status;
pub mod write;

pub use write::{FIELD_MANAGER, MANAGED_BY};

use futures::StreamExt;
use index::Index;
use k8s_openapi::api::core::v1::Namespace;
use kinds::Kinds;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, predicates, watcher};
use kube::{Client, ResourceExt};
use metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;

/// The plugin whose logic runs natively.
pub type Plugin = trellis_plugin_msdeploy::MsDeploy;

/// Settings of one controller process.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics_addr: SocketAddr,
}

/// Why the controller could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kind(#[from] kinds::KindError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Serve { addr: SocketAddr, source: std::io::Error },
}

/// What every reconcile reads.
pub(crate) struct Context {
    client: Client,
    kinds: Kinds,
    index: Index,
    /// The parents' namespaces, when the plugin reads them.
    namespaces: Option<Store<Namespace>>,
    metrics: Metrics,
    backoff: reconcile::Backoff,
    /// Statuses written that the parent cache may not show yet.
    written: write::Written,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(client: Client, options: Options) -> Result<(), Error> {
    let kinds = kinds::resolve(&client).await?;
    let metrics = Metrics::new();
    let addr = options.metrics_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Serve { addr, source })?;
    tokio::spawn(metrics::serve(listener, metrics.clone()));

    let api = |kind: &kinds::Kind| match &options.namespace {
        Some(ns) if kind.namespaced => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &kind.resource),
        _ => Api::all_with(client.clone(), &kind.resource),
    };

    let writer = reflector::store::Writer::new(kinds.parent.resource.clone());
    let parents = writer.as_reader();
    let parent_stream = watcher(api(&kinds.parent), watcher::Config::default())
        .default_backoff()
        .modify(drop_managed_fields)
        .reflect(writer)
        .applied_objects()
        // Only a new generation is news: not the controller's own status writes.
        .predicate_filter(predicates::generation, Default::default());
    let mut controller = Controller::for_stream_with(parent_stream, parents.clone(), kinds.parent.resource.clone());

    let index = Index::new(kinds.children.len());
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let index_handles = index.handles();
    for (position, kind) in kinds.children.iter().enumerate() {
        let handle = index_handles[position].clone();
        let meta = kind.clone();
        let stream = watcher(api(kind), watcher::Config::default().labels(&selector))
            .default_backoff()
            .modify(drop_managed_fields)
            .map(move |event| {
                if let Ok(event) = &event {
                    handle.observe(event, &meta);
                }
                event
            })
            .touched_objects();
        controller = controller.owns_stream_with(stream, kind.resource.clone());
    }

    let namespaces = if kinds.namespace_related {
        let config = match &options.namespace {
            Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default(),
        };
        let (reader, writer) = reflector::store();
        let stream = watcher(Api::<Namespace>::all(client.clone()), config)
            .default_backoff()
            .modify(drop_managed_fields)
            .reflect(writer)
            .touched_objects();
        let parents = parents.clone();
        let resource = kinds.parent.resource.clone();
        controller = controller.watches_stream(stream, move |namespace: Namespace| {
            let name = namespace.name_any();
            parents
                .state()
                .into_iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(name.as_str()))
                .map(|p| ObjectRef::from_obj_with(&*p, resource.clone()))
                .collect::<Vec<_>>()
        });
        Some(reader)
    } else {
        None
    };

    let context = Arc::new(Context {
        client,
        kinds,
        index,
        namespaces,
        metrics,
        backoff: reconcile::Backoff::default(),
        written: write::Written::default(),
    });
    tracing::info!(namespace = ?options.namespace, concurrency = options.concurrency, "controller started");
    controller
        .with_config(controller::Config::default().concurrency(options.concurrency))
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    tracing::info!("shut down");
    Ok(())
}

/// Nothing here reads managedFields, the largest part of most objects.
fn drop_managed_fields<K: ResourceExt>(object: &mut K) {
    object.managed_fields_mut().clear();
}
