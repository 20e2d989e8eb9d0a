//! Tests of the sandbox with deliberately misbehaving guests.

use super::*;
use crate::testing::guest_bytes;
use serde_json::json;
use std::sync::OnceLock;
use std::time::Instant;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            max_instances: 16,
            ..RuntimeConfig::default()
        })
        .unwrap()
    })
}

fn hostile(limits: Limits) -> Plugin {
    static HOSTILE: OnceLock<Plugin> = OnceLock::new();
    HOSTILE
        .get_or_init(|| {
            runtime()
                .load("hostile.wasm", &guest_bytes("trellis-test-hostile"), Limits::default())
                .unwrap()
        })
        .with_limits(limits)
}

fn request(mode: &str) -> ReconcileRequest {
    ReconcileRequest {
        parent: json!({
            "apiVersion": "test.trellis.dev/v1", "kind": "Hostile",
            "metadata": {"name": "h", "namespace": "team-a", "generation": 1},
            "spec": {"mode": mode}
        })
        .to_string()
        .into(),
        ..ReconcileRequest::default()
    }
}

fn run(mode: &str) -> Result<Desired, RuntimeError> {
    hostile(Limits::default()).reconcile(&request(mode))
}

#[test]
fn info_describes_the_plugin() {
    let info = hostile(Limits::default()).info().clone();
    assert_eq!(info.name, "hostile");
    assert_eq!(info.parent, KindRef::new("test.trellis.dev/v1", "Hostile"));
    assert!(info.children.contains(&KindRef::new("v1", "ConfigMap")));
    assert!(info.finalizer, "the hostile plugin asks for a finalizer");
}

#[test]
fn a_good_call_fills_in_the_namespace() {
    let desired = run("ok").unwrap();
    assert_eq!(desired.children.len(), 1);
    assert_eq!(desired.children[0].body["metadata"]["namespace"], "team-a");
    assert_eq!(desired.conditions[0].reason, "Fine");
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let started = Instant::now();
    let err = hostile(limits).reconcile(&request("loop")).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, RuntimeError::Timeout { .. }), "{err}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    assert!(err.to_string().contains("hostile"), "{err}");
}

/// Counts the turns a call takes and passes, and holds it in each passed
/// turn for a while, as a busy gate would.
struct CountingShare {
    taken: Arc<std::sync::atomic::AtomicUsize>,
    passed: Arc<std::sync::atomic::AtomicUsize>,
}

impl CpuShare for CountingShare {
    fn take_turn(&mut self, _end_quanta: &dyn Fn()) {
        self.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn pass_turn(&mut self) {
        self.passed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_loop_sharing_the_cpu_passes_its_turn_each_quantum_and_still_meets_its_deadline() {
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (taken, passed) = Default::default();
    let share = CountingShare {
        taken: Arc::clone(&taken),
        passed: Arc::clone(&passed),
    };
    let started = Instant::now();
    let err = hostile(limits)
        .reconcile_in_turn(&request("loop"), Box::new(share))
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, RuntimeError::Timeout { .. }), "{err}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "the deadline counts time waiting for turns too: took {took:?}"
    );
    let (taken, passed) = (
        taken.load(std::sync::atomic::Ordering::Relaxed),
        passed.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(taken, 1, "the call takes its first turn once");
    // About one pass per 10 ms tick plus the 20 ms each pass waits.
    assert!((8..=60).contains(&passed), "{passed} turns passed in {took:?}");
}

#[test]
fn the_default_deadline_is_about_one_second() {
    let started = Instant::now();
    let err = run("loop").unwrap_err();
    assert!(matches!(err, RuntimeError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn an_allocation_bomb_hits_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let err = hostile(limits).reconcile(&request("alloc-bomb")).unwrap_err();
    assert!(
        matches!(err, RuntimeError::MemoryLimit { limit_bytes, .. } if limit_bytes == 16 << 20),
        "{err}"
    );
}

#[test]
fn a_panic_is_a_trap_with_the_panic_message() {
    let err = run("panic").unwrap_err();
    assert!(matches!(err, RuntimeError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("hostile plugin panics on purpose"), "{err}");
}

#[test]
fn deep_recursion_is_a_trap() {
    // Rust guests keep their stack in linear memory: running off it is an
    // out-of-bounds access (or wasmtime's own stack overflow for frames).
    let err = run("recursion").unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Trap { message, .. } if message.contains("out of bounds") || message.contains("stack")),
        "{err}"
    );
}

#[test]
fn garbage_json_is_a_decode_error() {
    for mode in ["garbage-json", "not-json"] {
        let err = run(mode).unwrap_err();
        assert!(
            matches!(&err, RuntimeError::InvalidResponse { reason, .. } if reason.contains("child 0")),
            "{mode}: {err}"
        );
    }
}

#[test]
fn a_huge_response_is_stopped_while_it_is_copied_out() {
    // 8 MiB of children against a 4 MiB limit: the copy stops at 5 MiB.
    let err = run("huge-response").unwrap_err();
    assert!(
        matches!(err, RuntimeError::ResponseCopyStopped { limit, copy_limit, .. } if limit == 4 << 20 && copy_limit == 5 << 20),
        "{err}"
    );
    assert_eq!(err.cause(), "ResponseTooLarge");
}

#[test]
fn a_response_just_above_the_limit_is_copied_then_refused() {
    // 8 MiB: under the copy limit (8.5 MiB), over the response limit.
    let limits = Limits {
        response_bytes: 15 << 19,
        ..Limits::default()
    };
    let err = hostile(limits).reconcile(&request("huge-response")).unwrap_err();
    assert!(
        matches!(err, RuntimeError::ResponseTooLarge { size, limit, .. } if limit == 15 << 19 && size > limit),
        "{err}"
    );
}

#[test]
fn a_request_over_half_the_memory_limit_is_refused() {
    let plugin = hostile(Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    });
    let mut req = request("ok");
    req.related = vec![std::sync::Arc::from("x".repeat(9 << 20))];
    let err = plugin.reconcile(&req).unwrap_err();
    assert!(
        matches!(err, RuntimeError::RequestTooLarge { limit, .. } if limit == 8 << 20),
        "{err}"
    );
    req.related = vec![std::sync::Arc::from("{}")];
    plugin.reconcile(&req).unwrap();
}

#[test]
fn too_many_children_are_refused_by_count() {
    let err = run("many-children").unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::TooManyChildren {
                count: 2000,
                limit: 1000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_event_flood_is_capped_and_requeue_zero_is_floored() {
    let desired = run("event-flood").unwrap();
    assert_eq!(desired.events.len(), crate::runtime::MAX_EVENTS);
    assert_eq!(desired.events_dropped, 2000 - crate::runtime::MAX_EVENTS);
    assert_eq!(desired.requeue_after, Some(crate::runtime::MIN_REQUEUE));
}

#[test]
fn children_outside_the_contract_are_refused() {
    for (mode, needle) in [
        ("wrong-kind", "not among the kinds"),
        ("other-namespace", "outside the parent's namespace"),
        ("forged-owner", "ownerReferences"),
        ("bad-name", "not a valid object name"),
    ] {
        let err = run(mode).unwrap_err();
        assert!(
            matches!(&err, RuntimeError::InvalidResponse { reason, .. } if reason.contains(needle)),
            "{mode}: {err}"
        );
    }
}

#[test]
fn a_plugin_error_is_reported_as_such() {
    let err = run("invalid-spec").unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Reported { failure: PluginFailure::InvalidSpec(m), .. } if m == "spec.mode says so"),
        "{err}"
    );
    assert_eq!(err.cause(), "InvalidSpec");
}

#[test]
fn a_log_flood_is_cut_and_the_call_succeeds() {
    assert!(run("log-flood").is_ok());
}

#[test]
fn the_host_survives_and_serves_after_every_failure() {
    for mode in ["loop", "alloc-bomb", "panic", "recursion", "garbage-json"] {
        let limits = Limits {
            timeout: Duration::from_millis(100),
            memory_bytes: 8 << 20,
            ..Limits::default()
        };
        assert!(hostile(limits).reconcile(&request(mode)).is_err());
        assert!(run("ok").is_ok(), "a good call after {mode} works");
    }
}

#[test]
fn bytes_that_are_not_a_component_do_not_compile() {
    let err = runtime()
        .load("junk.wasm", b"definitely not wasm", Limits::default())
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Compile { module, .. } if module == "junk.wasm"),
        "{err}"
    );
}

#[test]
fn a_component_of_another_world_does_not_fit() {
    // A valid component that exports nothing: it cannot be a reconciler,
    // and it is refused before it is compiled, naming what it lacks.
    let bytes = wat::parse_str("(component)").unwrap();
    let err = runtime().load("empty.wasm", &bytes, Limits::default()).unwrap_err();
    assert!(matches!(err, RuntimeError::DoesNotFit { .. }), "{err}");
    assert!(
        err.to_string().contains("does not export info, related, reconcile"),
        "{err}"
    );
}

#[test]
fn a_component_of_another_world_in_text_is_incompatible() {
    // WAT text is not inspected before compiling; linking refuses it.
    let err = runtime()
        .load("empty.wasm", b"(component)", Limits::default())
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Incompatible { .. }), "{err}");
}

#[test]
fn the_digest_is_the_sha256_of_the_module() {
    assert_eq!(
        digest(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn a_module_over_the_size_limit_is_not_compiled() {
    let mut bytes = guest_bytes("trellis-test-hostile");
    bytes.resize(MAX_MODULE_BYTES + 1, 0);
    let err = runtime().load("huge.wasm", &bytes, Limits::default()).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::ModuleTooLarge { module, size, limit } if module == "huge.wasm" && *size == MAX_MODULE_BYTES + 1 && *limit == MAX_MODULE_BYTES),
        "{err}"
    );
}

fn hostile_object(mode: &str) -> serde_json::Value {
    json!({"apiVersion": "test.trellis.dev/v1", "kind": "Hostile",
        "metadata": {"name": "h", "namespace": "team-a"}, "spec": {"mode": mode}})
}

fn admission(mode: &str) -> AdmissionRequest {
    AdmissionRequest {
        operation: Operation::Create,
        object: Some(hostile_object(mode)),
        old_object: None,
        user: UserInfo::default(),
        related: Vec::new(),
        config: None,
    }
}

#[test]
fn a_0_1_0_plugin_links_beside_0_2_0_and_has_no_admission_hooks() {
    let legacy = runtime()
        .load("legacy.wasm", &guest_bytes("trellis-test-wit-v0-1"), Limits::default())
        .unwrap();
    assert_eq!(legacy.wit_version(), "0.1.0");
    assert!(!legacy.info().admission.any());
    let desired = legacy
        .reconcile(&ReconcileRequest {
            parent: json!({"apiVersion": "test.trellis.dev/v1", "kind": "Legacy",
                "metadata": {"name": "old", "namespace": "team-a"}})
            .to_string()
            .into(),
            ..ReconcileRequest::default()
        })
        .unwrap();
    assert_eq!(desired.children[0].name, "old-legacy");
    // Admission calls are answered without calling it: nothing to refuse.
    assert_eq!(legacy.validate(&admission("validate-refuse"), None).unwrap(), Ok(()));
    let object = hostile_object("default-label");
    assert_eq!(legacy.default(&object, None).unwrap(), Ok(object));
    assert_eq!(hostile(Limits::default()).wit_version(), "0.2.0");
}

#[test]
fn validate_and_default_run_in_the_sandbox_with_its_limits() {
    let plugin = hostile(Limits::default());
    assert!(plugin.info().admission.validate && plugin.info().admission.default);
    assert_eq!(plugin.validate(&admission("ok"), None).unwrap(), Ok(()));
    assert_eq!(
        plugin.validate(&admission("validate-refuse"), None).unwrap(),
        Err(vec!["hostile refuses".to_owned()])
    );
    let defaulted = plugin.default(&hostile_object("default-label"), None).unwrap().unwrap();
    assert_eq!(defaulted["metadata"]["labels"]["hostile.trellis.dev/defaulted"], "yes");
    match plugin.default(&hostile_object("default-status"), None) {
        Err(RuntimeError::ForbiddenDefault { field, .. }) => assert_eq!(field, "status"),
        other => panic!("a default that changes status: {other:?}"),
    }
    let quick = hostile(Limits {
        timeout: std::time::Duration::from_millis(100),
        ..Limits::default()
    });
    let started = Instant::now();
    assert!(matches!(
        quick.validate(&admission("validate-loop"), None),
        Err(RuntimeError::Timeout { call: "validate", .. })
    ));
    assert!(matches!(
        quick.default(&hostile_object("default-loop"), None),
        Err(RuntimeError::Timeout { call: "default", .. })
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(matches!(
        plugin.validate(&admission("validate-panic"), None),
        Err(RuntimeError::Trap { call: "validate", .. })
    ));
}

#[test]
fn a_related_answer_is_checked_and_bounded_by_the_deadline() {
    use super::{RelatedAnswer, RelatedPicker, SelectionError};
    let asking = |mode: &str| {
        let mut req = request(mode);
        req.pick_related = Some(RelatedPicker(std::sync::Arc::new(|answer: &RelatedAnswer| {
            assert_eq!(*answer, RelatedAnswer::Everything, "only good answers reach the picker");
            Ok(Vec::new())
        })));
        hostile(Limits::default()).reconcile(&req)
    };
    let desired = asking("ok").unwrap();
    assert_eq!(
        desired.related,
        Some(RelatedAnswer::Everything),
        "asked, and the answer kept"
    );
    assert!(run("ok").unwrap().related.is_none(), "not asked");
    let err = asking("related-undeclared").unwrap_err();
    assert!(
        matches!(
            &err,
            RuntimeError::RelatedRefused {
                source: SelectionError::UndeclaredKind { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.cause(), "RelatedRefused");
    let err = asking("related-loop").unwrap_err();
    assert!(matches!(&err, RuntimeError::Timeout { call: "reconcile", .. }), "{err}");
}

#[test]
fn decorations_outside_the_contract_are_refused() {
    for (mode, says) in [
        ("decorate-undeclared", "not among the plugin's related kinds"),
        ("decorate-host-key", "host's own prefix"),
    ] {
        let err = run(mode).unwrap_err();
        assert!(matches!(&err, RuntimeError::InvalidResponse { .. }), "{mode}: {err}");
        assert!(err.to_string().contains(says), "{mode}: {err}");
    }
}
