//! [`Plugin`]: a compiled, linked module and the calls into it, each in a
//! fresh sandboxed instance.

use super::bindings::v0_2::trellis::reconciler::types as wit;
use super::bindings::{v0_1, v0_2};
use super::contract::{AdmissionRequest, Desired, Operation, PluginInfo, ReconcileRequest};
use super::error::{RuntimeError, one_line};
use super::related::{self, RelatedAnswer};
use super::sandbox::{LogRate, Sandbox};
use super::{CpuShare, Limits, admission, validate};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// A linked module, of either WIT version the host supports.
pub(super) enum Pre {
    /// Built against `trellis:reconciler@0.1.0`: no admission hooks.
    V0_1(v0_1::ReconcilerPre<Sandbox>),
    /// Built against `trellis:reconciler@0.2.0`.
    V0_2(v0_2::ReconcilerPre<Sandbox>),
}

/// One instance of a [`Pre`].
enum Instance {
    V0_1(v0_1::Reconciler),
    V0_2(v0_2::Reconciler),
}

impl Pre {
    fn engine(&self) -> &Engine {
        match self {
            Self::V0_1(pre) => pre.engine(),
            Self::V0_2(pre) => pre.engine(),
        }
    }

    fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Self::V0_1(pre) => Instance::V0_1(pre.instantiate(store)?),
            Self::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
        })
    }

    /// The WIT package version the module was built against.
    fn wit_version(&self) -> &'static str {
        match self {
            Self::V0_1(_) => "0.1.0",
            Self::V0_2(_) => "0.2.0",
        }
    }
}

/// A loaded plugin. Cheap to clone; calls may run concurrently.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
    limits: Limits,
}

struct Inner {
    module: String,
    pre: Pre,
    info: PluginInfo,
    digest: String,
    max_memory_bytes: usize,
    /// Its log lines this second, all calls together.
    log_rate: Arc<LogRate>,
}

/// The sha256 of a module, as lowercase hex: how modules are pinned.
pub fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Plugin {
    pub(super) fn new(
        module: &str,
        pre: Pre,
        digest: String,
        limits: Limits,
        max_memory_bytes: usize,
    ) -> Result<Self, RuntimeError> {
        let limits = Limits {
            memory_bytes: limits.memory_bytes.min(max_memory_bytes),
            ..limits
        };
        let log_rate = Arc::new(LogRate::default());
        let info = call(
            &pre,
            &log_rate,
            module,
            "info",
            "",
            limits,
            None,
            |store, instance| match instance {
                Instance::V0_1(i) => i.call_info(store).map(Into::into),
                Instance::V0_2(i) => i.call_info(store),
            },
        )?;
        let info = validate::plugin_info(module, info)?;
        Ok(Self {
            inner: Arc::new(Inner {
                module: module.to_owned(),
                pre,
                info,
                digest,
                max_memory_bytes,
                log_rate,
            }),
            limits,
        })
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// Where the module came from (a file or ConfigMap), for messages.
    pub fn module(&self) -> &str {
        &self.inner.module
    }

    /// The WIT package version the module implements (`0.1.0`, `0.2.0`).
    pub fn wit_version(&self) -> &'static str {
        self.inner.pre.wit_version()
    }

    /// The sha256 of the module bytes, hex.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// The limits each call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The same plugin with other limits (e.g. from its registration); the
    /// memory limit is capped by the runtime's largest.
    pub fn with_limits(&self, limits: Limits) -> Self {
        let memory_bytes = limits.memory_bytes.min(self.inner.max_memory_bytes);
        Self {
            inner: self.inner.clone(),
            limits: Limits { memory_bytes, ..limits },
        }
    }

    /// Runs one reconcile and checks the response. Blocking: call it from
    /// a blocking thread in async code.
    pub fn reconcile(&self, req: &ReconcileRequest) -> Result<Desired, RuntimeError> {
        self.reconcile_sharing(req, None)
    }

    /// [`Plugin::reconcile`], running only in the turns `share` gives.
    pub fn reconcile_in_turn(&self, req: &ReconcileRequest, share: Box<dyn CpuShare>) -> Result<Desired, RuntimeError> {
        self.reconcile_sharing(req, Some(share))
    }

    fn reconcile_sharing(
        &self,
        req: &ReconcileRequest,
        share: Option<Box<dyn CpuShare>>,
    ) -> Result<Desired, RuntimeError> {
        let identity = Identity::of(&req.parent);
        let namespace = identity.namespace.as_deref().filter(|ns| !ns.is_empty());
        let subject = identity.key();
        let fixed_size = req.parent.len()
            + req.children.iter().map(|c| c.len()).sum::<usize>()
            + req.config.as_ref().map_or(0, |c| c.to_string().len());
        let given = req.pick_related.is_none().then_some(&req.related);
        self.check_request_size(fixed_size + given.map_or(0, |r| r.iter().map(|o| o.len()).sum()))?;
        let mut wit_req = wit::Request {
            parent: String::from(&*req.parent),
            children: req.children.iter().map(|c| String::from(&**c)).collect(),
            related: given.map_or_else(Vec::new, |r| r.iter().map(|o| String::from(&**o)).collect()),
            config: req.config.as_ref().map(Value::to_string),
            finalizing: req.finalizing,
        };
        let pick = req.pick_related.clone();
        let plugin = self.name().to_owned();
        let related_kinds = &self.inner.info.related;
        let memory_limit = self.limits.memory_bytes;
        let outcome = call(
            &self.inner.pre,
            &self.inner.log_rate,
            self.name(),
            "reconcile",
            &subject,
            self.limits,
            share,
            move |store, instance| {
                // Ask which related objects the parent needs, then hand
                // over those: both calls in this one instance.
                let answer = match (&pick, instance) {
                    (None, _) => None,
                    (Some(_), Instance::V0_1(_)) => Some(RelatedAnswer::Everything),
                    (Some(_), Instance::V0_2(i)) => {
                        let answer = i.call_related(&mut *store, &wit_req.parent)?;
                        match related::selectors(related_kinds, answer) {
                            Ok(answer) => Some(answer),
                            Err(source) => return Ok(Err(RuntimeError::RelatedRefused { plugin, source })),
                        }
                    }
                };
                if let (Some(pick), Some(answer)) = (&pick, &answer) {
                    let picked = match (pick.0)(answer) {
                        Ok(picked) => picked,
                        Err(source) => return Ok(Err(RuntimeError::RelatedRefused { plugin, source })),
                    };
                    let size = fixed_size + picked.iter().map(|o| o.len()).sum::<usize>();
                    if size > memory_limit / 2 {
                        let limit = memory_limit / 2;
                        return Ok(Err(RuntimeError::RequestTooLarge { plugin, size, limit }));
                    }
                    wit_req.related = picked.iter().map(|o| String::from(&**o)).collect();
                }
                let response = match instance {
                    Instance::V0_1(i) => i
                        .call_reconcile(store, &wit_req.into())
                        .map(|r| r.map(Into::into).map_err(Into::into))?,
                    Instance::V0_2(i) => i.call_reconcile(store, &wit_req)?,
                };
                Ok(Ok((answer, response)))
            },
        )?;
        let (answer, response) = outcome?;
        let mut desired = validate::response(&self.inner.info, namespace, self.limits.response_bytes, response)?;
        desired.related = answer;
        Ok(desired)
    }

    /// Asks the plugin whether it admits the request's object; the inner
    /// result lists the plugin's objections (bounded). A plugin without the
    /// `validate` hook (every 0.1.0 plugin: its info has no hooks) admits
    /// everything without being called. With
    /// `share`, the call runs only in its turns.
    pub fn validate(
        &self,
        req: &AdmissionRequest,
        share: Option<Box<dyn CpuShare>>,
    ) -> Result<Result<(), Vec<String>>, RuntimeError> {
        if !self.inner.info.admission.validate {
            return Ok(Ok(()));
        }
        let subject = req
            .object
            .as_ref()
            .or(req.old_object.as_ref())
            .map(object_key)
            .unwrap_or_default();
        let wit_req = wit::AdmissionRequest {
            operation: match req.operation {
                Operation::Create => wit::Operation::Create,
                Operation::Update => wit::Operation::Update,
                Operation::Delete => wit::Operation::Delete,
            },
            object: req.object.as_ref().map(Value::to_string),
            old_object: req.old_object.as_ref().map(Value::to_string),
            user: wit::UserInfo {
                username: req.user.username.clone(),
                groups: req.user.groups.clone(),
            },
            related: req.related.iter().map(|r| String::from(&**r)).collect(),
            config: req.config.as_ref().map(Value::to_string),
        };
        let size = wit_req.object.as_ref().map_or(0, String::len)
            + wit_req.old_object.as_ref().map_or(0, String::len)
            + wit_req.related.iter().map(String::len).sum::<usize>()
            + wit_req.config.as_ref().map_or(0, String::len);
        self.check_request_size(size)?;
        let verdict = call(
            &self.inner.pre,
            &self.inner.log_rate,
            self.name(),
            "validate",
            &subject,
            self.limits,
            share,
            |store, instance| match instance {
                Instance::V0_2(i) => i.call_validate(store, &wit_req),
                // Not reached: a 0.1.0 plugin has no hooks (above).
                Instance::V0_1(_) => Ok(Ok(())),
            },
        )?;
        Ok(verdict.map_err(admission::bounded_objections))
    }

    /// Asks the plugin to fill in defaults of `obj`: the inner result is
    /// the defaulted object, or the plugin's objections. The object may
    /// differ from `obj` only in labels, annotations and spec; anything
    /// else is a [`RuntimeError::ForbiddenDefault`]. A plugin without the
    /// `default` hook returns `obj` as it is, without being called.
    pub fn default(
        &self,
        obj: &Value,
        share: Option<Box<dyn CpuShare>>,
    ) -> Result<Result<Value, Vec<String>>, RuntimeError> {
        if !self.inner.info.admission.default {
            return Ok(Ok(obj.clone()));
        }
        let text = obj.to_string();
        self.check_request_size(text.len())?;
        let returned = call(
            &self.inner.pre,
            &self.inner.log_rate,
            self.name(),
            "default",
            &object_key(obj),
            self.limits,
            share,
            move |store, instance| match instance {
                Instance::V0_2(i) => i.call_default(store, &text),
                // Not reached: a 0.1.0 plugin has no hooks (above).
                Instance::V0_1(_) => Ok(Ok(text)),
            },
        )?;
        match returned {
            Ok(returned) => admission::defaulted(self.name(), obj, &returned).map(Ok),
            Err(objections) => Ok(Err(admission::bounded_objections(objections))),
        }
    }

    /// Asks the plugin to fill in a new object of one of its
    /// `default-related` kinds, given its `parents` (as JSON text): the
    /// inner result is the object as it should be stored, or the plugin's
    /// objections. As with [`Plugin::default`], only labels, annotations
    /// and spec may differ. An object of another kind is returned as it
    /// is, without a call.
    pub fn default_related(
        &self,
        obj: &Value,
        parents: &[Arc<str>],
        share: Option<Box<dyn CpuShare>>,
    ) -> Result<Result<Value, Vec<String>>, RuntimeError> {
        let listed = super::KindRef::of(obj).is_some_and(|k| self.inner.info.default_related.contains(&k));
        if !listed {
            return Ok(Ok(obj.clone()));
        }
        let text = obj.to_string();
        let parents: Vec<String> = parents.iter().map(|p| String::from(&**p)).collect();
        self.check_request_size(text.len() + parents.iter().map(String::len).sum::<usize>())?;
        let returned = call(
            &self.inner.pre,
            &self.inner.log_rate,
            self.name(),
            "default-related",
            &object_key(obj),
            self.limits,
            share,
            move |store, instance| match instance {
                Instance::V0_2(i) => i.call_default_related(store, &text, &parents),
                // Not reached: a 0.1.0 plugin lists no default-related kinds.
                Instance::V0_1(_) => Ok(Ok(text)),
            },
        )?;
        match returned {
            Ok(returned) => admission::defaulted(self.name(), obj, &returned).map(Ok),
            Err(objections) => Ok(Err(admission::bounded_objections(objections))),
        }
    }

    /// Refuses a request above half the memory limit: it is copied into the
    /// guest's memory and parsed there.
    fn check_request_size(&self, size: usize) -> Result<(), RuntimeError> {
        let limit = self.limits.memory_bytes / 2;
        if size > limit {
            return Err(RuntimeError::RequestTooLarge {
                plugin: self.name().to_owned(),
                size,
                limit,
            });
        }
        Ok(())
    }

    fn name(&self) -> &str {
        &self.inner.info.name
    }
}

/// The name and namespace of an object given as text, read without parsing
/// the rest of it.
#[derive(Default, serde::Deserialize)]
struct Identity {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

impl Identity {
    fn of(object: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(default)]
            metadata: Identity,
        }
        serde_json::from_str::<Head>(object)
            .map(|h| h.metadata)
            .unwrap_or_default()
    }

    /// `namespace/name`, or `name` when cluster-scoped.
    fn key(&self) -> String {
        key(self.namespace.as_deref(), self.name.as_deref().unwrap_or_default())
    }
}

/// `namespace/name` of an object, or `name` when cluster-scoped.
fn object_key(object: &Value) -> String {
    key(
        object["metadata"]["namespace"].as_str(),
        object["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

/// `namespace/name`, or `name` without a namespace.
fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_owned(),
    }
}

/// Instantiates the module in a fresh store and makes one call, turning any
/// failure into a [`RuntimeError`] that says what happened. With `share`,
/// the call runs only in its turns (see [`CpuShare`]).
#[allow(clippy::too_many_arguments)]
fn call<R>(
    pre: &Pre,
    log_rate: &Arc<LogRate>,
    plugin: &str,
    call: &'static str,
    subject: &str,
    limits: Limits,
    mut share: Option<Box<dyn CpuShare>>,
    f: impl FnOnce(&mut Store<Sandbox>, &Instance) -> wasmtime::Result<R>,
) -> Result<R, RuntimeError> {
    let mut store = Store::new(
        pre.engine(),
        Sandbox::new(plugin, subject, limits.memory_bytes, log_rate.clone()),
    );
    store.limiter(|sandbox| &mut sandbox.limiter);
    // Bounds what wasmtime copies out of the guest, its return value and
    // the arguments of each host call alike: bytes of strings and lists,
    // counted while they are copied. So a response far above the limit is
    // stopped part way, never held whole; one just above it is refused by
    // the exact check after.
    store.set_hostcall_fuel(copy_limit(limits));
    let deadline = Instant::now() + limits.timeout;
    // Each tick (or a quantum ended early for a call that waits) lets the
    // call be stopped at its deadline and, when calls take turns, let a
    // waiting call run. The deadline is by the clock, not a count of
    // ticks, since quanta may end early. The share is dropped with the
    // store, when the call ends.
    if let Some(share) = share.as_mut() {
        share.take_turn(&|| pre.engine().increment_epoch());
    }
    store.epoch_deadline_callback(move |_| {
        if let Some(share) = share.as_mut()
            && Instant::now() < deadline
        {
            share.pass_turn();
        }
        if Instant::now() >= deadline {
            return Err(Trap::Interrupt.into());
        }
        Ok(UpdateDeadline::Continue(1))
    });
    store.set_epoch_deadline(1);

    let instance = match pre.instantiate(&mut store) {
        Ok(instance) => instance,
        Err(e) if e.downcast_ref::<Trap>().is_some() || store.data().limiter.exceeded => {
            return Err(classify(&store, plugin, call, limits, e));
        }
        Err(e) => {
            return Err(RuntimeError::Instantiate {
                plugin: plugin.to_owned(),
                reason: one_line(&e),
            });
        }
    };
    f(&mut store, &instance).map_err(|e| classify(&store, plugin, call, limits, e))
}

/// Bytes a call may copy out of its guest at once: the response limit and
/// room for the host's side of its lists (children, conditions, events).
fn copy_limit(limits: Limits) -> usize {
    limits.response_bytes.saturating_add(1 << 20)
}

/// What wasmtime says when the guest hands over more than its copy limit
/// (the error's type is private to wasmtime).
const COPY_LIMIT_MESSAGE: &str = "too much data is being copied between the host and the guest";

fn classify(
    store: &Store<Sandbox>,
    plugin: &str,
    call: &'static str,
    limits: Limits,
    error: wasmtime::Error,
) -> RuntimeError {
    let plugin = plugin.to_owned();
    if store.data().limiter.exceeded {
        return RuntimeError::MemoryLimit {
            plugin,
            call,
            limit_bytes: limits.memory_bytes,
        };
    }
    if error
        .chain()
        .any(|cause| cause.to_string().contains(COPY_LIMIT_MESSAGE))
    {
        return RuntimeError::ResponseCopyStopped {
            plugin,
            call,
            limit: limits.response_bytes,
            copy_limit: copy_limit(limits),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RuntimeError::Timeout {
            plugin,
            call,
            timeout: limits.timeout,
        },
        trap => {
            let what = trap.map_or_else(|| one_line(&error), Trap::to_string);
            let message = match panic_message(store.data()) {
                Some(panic) => format!("{what}: {panic}"),
                None => what,
            };
            RuntimeError::Trap { plugin, call, message }
        }
    }
}

/// The guest's panic message (`panicked at src/lib.rs:3:5:\nboom`) on one line.
fn panic_message(sandbox: &Sandbox) -> Option<String> {
    let stderr = sandbox.stderr_text();
    match stderr.find("panicked at") {
        Some(at) => Some(stderr[at..].split_whitespace().collect::<Vec<_>>().join(" ")),
        None => sandbox.last_stderr_line(),
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("module", &self.inner.module)
            .field("info", &self.inner.info)
            .field("digest", &self.inner.digest)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}
