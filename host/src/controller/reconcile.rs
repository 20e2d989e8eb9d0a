//! One reconcile of one parent, as in docs/architecture.md "Data flow": read the
//! parent, its children and related objects; call the plugin; check the
//! response; apply, prune, write status and events; requeue as asked.

use super::apply::{self, ApplyError};
use super::children::ParentRef;
use super::decorate::{self, DecorateError};
use super::index::CachedObject;
use super::parent::ParentObject;
use super::related::{self, RelatedSource, Selection};
use super::{Context, FINALIZER, GateError, Registration};
use crate::runtime::{Desired, PluginFailure, ReconcileRequest, RelatedPicker, RuntimeError};
use crate::status;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requeue while a plugin has not finished finalizing and named no time.
const FINALIZE_POLL: Duration = Duration::from_secs(5);
/// Longest a plugin call may take beyond its plugin's deadline, waiting for
/// a call slot included. The deadline bounds the call only: once the writes
/// have begun they run to the end (each request bounded by the client's own
/// timeouts), so a reconcile is never cut off with its children half applied.
const RECONCILE_GRACE: Duration = Duration::from_secs(20);

/// Sharded: how soon a parent whose cached copy was older than the API's is
/// tried again (by then the watch has usually delivered the newer one).
const STALE_RETRY: Duration = Duration::from_millis(200);

/// Why a reconcile failed; the controller retries with per-object backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Plugin(#[from] RuntimeError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Decorate(#[from] DecorateError),
    #[error("the plugin task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the parent has no name or uid")]
    NoIdentity,
    #[error("the plugin call did not finish within {0:?}; abandoned, to be retried")]
    Deadline(Duration),
    #[error(transparent)]
    Gate(#[from] GateError),
    /// Sharded: the parent could not be read fresh under its shard's grant.
    #[error("could not read the parent before its first reconcile on this replica: {0}")]
    FreshRead(#[source] kube::Error),
}

impl ReconcileError {
    /// The reason shown on the parent's `Ready` condition and in metrics.
    pub fn reason(&self) -> String {
        match self {
            Self::Plugin(e) => e.cause().to_owned(),
            Self::Apply(e) => e.reason(),
            Self::Decorate(e) => e.reason(),
            Self::Join(_) => "PluginTaskFailed".to_owned(),
            Self::NoIdentity => "NoIdentity".to_owned(),
            Self::Deadline(_) => "ReconcileDeadline".to_owned(),
            Self::Gate(GateError::MemoryBudget { .. }) => "MemoryBudgetExhausted".to_owned(),
            Self::Gate(GateError::AboveBudget { .. }) => "LimitAboveMemoryBudget".to_owned(),
            Self::FreshRead(_) => "FreshReadFailed".to_owned(),
        }
    }
}

fn key(parent: &ParentRef) -> String {
    match &parent.namespace {
        Some(ns) => format!("{ns}/{}", parent.name),
        None => parent.name.clone(),
    }
}

/// The reconcile function handed to kube-runtime's `Controller`.
pub async fn reconcile(object: Arc<ParentObject>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.caches_ready().await;
    let registration = ctx.registration();
    let parent = object.value();
    let parent_ref = ParentRef::of(&parent).ok_or(ReconcileError::NoIdentity)?;
    let key = key(&parent_ref);
    // Sharded: only a parent of a shard held here, read fresh under the
    // shard's grant; the shard is held in flight until the writes are done.
    let _shard = match super::sharded::begin(&ctx, &object, &key).await {
        Ok(super::sharded::Turn::Go(shard)) => shard,
        Ok(super::sharded::Turn::NotOurs) => return Ok(Action::await_change()),
        Ok(super::sharded::Turn::Stale) => return Ok(Action::requeue(STALE_RETRY)),
        Err(e) => return Err(ReconcileError::FreshRead(e)),
    };
    let _in_flight = ctx.shared.metrics.reconcile_started(&registration.name);
    let outcome = run(&ctx, &registration, &parent, &object.text, &parent_ref).await;
    match outcome {
        Ok(action) => {
            ctx.backoff.succeeded(&key);
            Ok(action)
        }
        Err(error) => {
            let reason = error.reason();
            ctx.shared.metrics.reconcile_failed(&registration.name, &reason);
            tracing::warn!(plugin = %registration.name, object = %key, reason = %reason, error = %error, "reconcile failed");
            let message = error.to_string();
            let report = report_failure(&ctx, &registration, &parent, &reason, &message);
            if tokio::time::timeout(RECONCILE_GRACE, report).await.is_err() {
                tracing::warn!(plugin = %registration.name, object = %key, "reporting the failure timed out");
            }
            // A spec error waits for the user to edit the parent.
            if matches!(
                &error,
                ReconcileError::Plugin(RuntimeError::Reported {
                    failure: PluginFailure::InvalidSpec(_),
                    ..
                })
            ) {
                ctx.backoff.succeeded(&key);
                return Ok(Action::await_change());
            }
            Err(error)
        }
    }
}

/// How long to wait after a failure: exponential per object, the longest
/// for failures of the plugin itself that retrying will not mend soon.
pub fn error_policy(object: Arc<ParentObject>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = match &object.metadata.namespace {
        Some(ns) => format!("{ns}/{}", object.metadata.name.clone().unwrap_or_default()),
        None => object.metadata.name.clone().unwrap_or_default(),
    };
    let delay = match error {
        ReconcileError::Plugin(RuntimeError::Reported {
            failure: PluginFailure::Fatal(_),
            ..
        }) => ctx.backoff.longest(&key),
        _ => ctx.backoff.failed(&key),
    };
    Action::requeue(delay)
}

async fn run(
    ctx: &Context,
    registration: &Registration,
    parent: &Value,
    parent_text: &Arc<str>,
    parent_ref: &ParentRef,
) -> Result<Action, ReconcileError> {
    let has_finalizer = parent["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
    if !parent["metadata"]["deletionTimestamp"].is_null() {
        return finalize(ctx, registration, parent, parent_text, parent_ref, has_finalizer).await;
    }
    if registration.finalizer && !has_finalizer {
        apply::set_finalizer(ctx, parent, true).await?;
    }

    let observed = apply::observed_children(ctx, parent_ref);
    let mut desired = call_plugin(ctx, registration, parent, parent_text, &observed, false).await?;
    // Decorations are removed when the parent goes: that takes the finalizer.
    let decorating = !desired.decorations.is_empty();
    if decorating && !registration.finalizer && !has_finalizer {
        apply::set_finalizer(ctx, parent, true).await?;
    }

    let started = Instant::now();
    let manager = registration.field_manager();
    let writes = apply::children(
        ctx,
        &manager,
        &registration.name,
        parent_ref,
        std::mem::take(&mut desired.children),
        &observed,
    )
    .await?;
    let decorated = if decorating || decorate::has_any(ctx, &registration.name, &parent_ref.uid) {
        decorate::write(
            ctx,
            &registration.name,
            &parent_ref.uid,
            parent_ref.namespace.as_deref(),
            &desired.decorations,
        )
        .await?
    } else {
        decorate::Decorated::default()
    };
    if !registration.finalizer && !decorating && has_finalizer {
        apply::set_finalizer(ctx, parent, false).await?;
    }
    let parent = apply::with_written_status(ctx, parent);
    let status = status::desired_status(&parent, &desired, &status::now());
    let wrote_status = apply::status(ctx, &manager, &parent, status).await?;
    let metrics = &ctx.shared.metrics;
    metrics.applied(&registration.name, started.elapsed());
    metrics.wrote(&registration.name, "applied", writes.applied);
    metrics.wrote(&registration.name, "skipped", writes.skipped);
    metrics.wrote(&registration.name, "pruned", writes.pruned);
    metrics.wrote(&registration.name, "status", u64::from(wrote_status));
    metrics.wrote(&registration.name, "decorated", decorated.written);
    tracing::debug!(plugin = %registration.name, object = %key(parent_ref), applied = writes.applied, skipped = writes.skipped, pruned = writes.pruned, decorated = decorated.written, decorations_unchanged = decorated.unchanged, decoration_targets_absent = decorated.absent, status = wrote_status, "reconciled");

    publish_events(ctx, &desired, &parent).await;
    if writes.missed_news {
        return Ok(Action::requeue(Duration::ZERO));
    }
    Ok(desired.requeue_after.map_or_else(Action::await_change, Action::requeue))
}

async fn finalize(
    ctx: &Context,
    registration: &Registration,
    parent: &Value,
    parent_text: &Arc<str>,
    parent_ref: &ParentRef,
    has_finalizer: bool,
) -> Result<Action, ReconcileError> {
    if !has_finalizer {
        return Ok(Action::await_change());
    }
    if registration.finalizer {
        let observed = apply::observed_children(ctx, parent_ref);
        let desired = call_plugin(ctx, registration, parent, parent_text, &observed, true).await?;
        publish_events(ctx, &desired, parent).await;
        if !desired.finalized {
            let status = status::desired_status(parent, &desired, &status::now());
            apply::status(ctx, &registration.field_manager(), parent, status).await?;
            return Ok(Action::requeue(desired.requeue_after.unwrap_or(FINALIZE_POLL)));
        }
    }
    // What the parent's decorations set comes off before the parent goes.
    decorate::remove_all(ctx, &registration.name, &parent_ref.uid).await?;
    apply::set_finalizer(ctx, parent, false).await?;
    Ok(Action::await_change())
}

/// Calls the plugin on a blocking thread and records its latency; waiting
/// for a call slot and the call together take at most the plugin's deadline
/// plus [`RECONCILE_GRACE`].
async fn call_plugin(
    ctx: &Context,
    registration: &Registration,
    parent: &Value,
    parent_text: &Arc<str>,
    children: &[Arc<CachedObject>],
    finalizing: bool,
) -> Result<Desired, ReconcileError> {
    let namespace = parent["metadata"]["namespace"].as_str();
    let key = related::parent_key(namespace, parent["metadata"]["name"].as_str().unwrap_or_default());
    let version = parent["metadata"]["resourceVersion"].as_str().unwrap_or_default();
    // The answer depends on the parent alone: asked once per version.
    let known = ctx
        .selections
        .read()
        .expect("selections lock")
        .get(&key)
        .filter(|s| s.resource_version == version)
        .map(|s| s.answer.clone());
    let source = || RelatedSource {
        kinds: ctx.related.clone(),
        namespace: namespace.map(str::to_owned),
        tenant: registration.tenant_namespace.is_some(),
    };
    let (related, pick_related) = match known {
        _ if ctx.related.is_empty() => (Vec::new(), None),
        Some(answer) => (
            source().pick(&answer).map_err(|source| RuntimeError::RelatedRefused {
                plugin: registration.name.clone(),
                source,
            })?,
            None,
        ),
        None => {
            let source = source();
            (
                Vec::new(),
                Some(RelatedPicker(Arc::new(move |answer| source.pick(answer)))),
            )
        }
    };
    let request = ReconcileRequest {
        parent: parent_text.clone(),
        children: children.iter().map(|c| c.text.clone()).collect(),
        related,
        pick_related,
        config: registration.config.clone(),
        finalizing,
    };
    let plugin = registration.plugin.clone();
    let deadline = plugin.limits().timeout + RECONCILE_GRACE;
    let call = async {
        let permit = ctx
            .shared
            .calls
            .enter(&registration.name, plugin.limits().memory_bytes)
            .await?;
        let started = Instant::now();
        // The call itself stops at the plugin's own deadline (epochs), and
        // runs in the CPU turns the permit gives; the permit goes with it.
        let result = tokio::task::spawn_blocking(move || plugin.reconcile_in_turn(&request, Box::new(permit))).await?;
        ctx.shared.metrics.plugin_called(&registration.name, started.elapsed());
        Ok(result?)
    };
    let mut desired: Desired = tokio::time::timeout(deadline, call)
        .await
        .unwrap_or(Err(ReconcileError::Deadline(deadline)))?;
    if let Some(answer) = desired.related.take() {
        let selection = Selection {
            resource_version: version.to_owned(),
            answer,
        };
        ctx.selections.write().expect("selections lock").insert(key, selection);
    }
    Ok(desired)
}

async fn publish_events(ctx: &Context, desired: &Desired, parent: &Value) {
    let uid = parent["metadata"]["uid"].as_str().unwrap_or_default();
    let admitted = ctx.event_rate.admit(uid, desired.events.len());
    let dropped = desired.events_dropped + (desired.events.len() - admitted);
    if dropped > 0 {
        let plugin = ctx.registration().name.clone();
        tracing::debug!(plugin = %plugin, dropped, "events over the per-reconcile cap or the parent's rate dropped");
        ctx.shared.metrics.events_dropped(&plugin, dropped);
    }
    for event in &desired.events[..admitted] {
        let event = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.clone(),
            note: Some(event.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        publish(ctx, event, parent).await;
    }
}

async fn publish(ctx: &Context, event: Event, parent: &Value) {
    let reference = object_reference(parent);
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(error = %e, "could not record an event");
    }
}

fn object_reference(parent: &Value) -> k8s_openapi::api::core::v1::ObjectReference {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: text(&parent["apiVersion"]),
        kind: text(&parent["kind"]),
        name: text(&parent["metadata"]["name"]),
        namespace: text(&parent["metadata"]["namespace"]),
        uid: text(&parent["metadata"]["uid"]),
        resource_version: text(&parent["metadata"]["resourceVersion"]),
        ..Default::default()
    }
}

/// `Ready=False` with the reason on the parent, and a Warning event.
async fn report_failure(ctx: &Context, registration: &Registration, parent: &Value, reason: &str, message: &str) {
    let status = status::failed_status(parent, reason, message, &status::now());
    if let Err(e) = apply::status(ctx, &registration.field_manager(), parent, status).await {
        tracing::debug!(error = %e, "could not write the failure status");
    }
    let event = Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    publish(ctx, event, parent).await;
}
