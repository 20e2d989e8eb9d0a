//! Answering one AdmissionReview: the plugin's `default` (mutate) or
//! `validate` in the same sandbox and call gate as its reconciles, the
//! JSONPatch computed by the host from the object the plugin returns, and
//! the registration's `failurePolicy` when the plugin fails. The
//! `default-related` hook fills in new objects of related kinds, which the
//! plugin does not own: whatever goes wrong there, the object is admitted
//! as it came (with a warning). Always answers within [`ANSWER_DEADLINE`],
//! well below the configuration's timeout.

use crate::controller::AdmissionTarget;
use crate::crd::FailurePolicy;
use crate::runtime::{AdmissionRequest, Limits, Operation, RuntimeError, UserInfo};
use kube::api::DynamicObject;
use kube::core::admission::{self, AdmissionResponse, AdmissionReview};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The longest one plugin call in admission may take (its own limit if
/// lower).
pub const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// The longest the host takes to answer, waiting for a call slot included.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

/// Which hook a review is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `/mutate/<registration>`: the plugin's `default`.
    Mutate,
    /// `/validate/<registration>`: the plugin's `validate`.
    Validate,
    /// `/mutate-related/<registration>`: the plugin's `default-related`.
    MutateRelated,
}

impl Hook {
    /// The path segment and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
            Self::MutateRelated => "mutate-related",
        }
    }
}

/// Why a plugin's admission call gave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    #[error(transparent)]
    Plugin(#[from] RuntimeError),
    #[error("no call slot: {0}")]
    Gate(#[from] crate::controller::GateError),
    #[error("no answer within {0:?}")]
    Deadline(Duration),
    #[error("the call's thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The answer to `review` for the registration `target` (none: not
/// served by this host now).
pub async fn answer(
    hook: Hook,
    registration: &str,
    target: Option<AdmissionTarget>,
    review: AdmissionReview<DynamicObject>,
) -> AdmissionReview<DynamicObject> {
    let request: admission::AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => return AdmissionResponse::invalid(format!("not an AdmissionReview request: {e}")).into_review(),
    };
    let response = AdmissionResponse::from(&request);
    let Some(target) = target else {
        if hook == Hook::MutateRelated {
            // Not the plugin's object: never held up by the host's state.
            return failed(
                response,
                FailurePolicy::Ignore,
                "the registration is not served by this host now",
            )
            .0
            .into_review();
        }
        return response
            .deny(format!(
                "the Trellis registration {registration} is not served by this host now (it is starting, or was removed)"
            ))
            .into_review();
    };
    let started = Instant::now();
    let (response, verdict) = decide(hook, &target, &request, response).await;
    target
        .metrics()
        .admission_answered(&target.registration().name, hook.as_str(), verdict, started.elapsed());
    tracing::debug!(registration, hook = hook.as_str(), verdict, object = %request.name, namespace = ?request.namespace, took_us = started.elapsed().as_micros() as u64, "admission answered");
    response.into_review()
}

/// The response and a verdict label (`allowed`, `denied`, `patched`,
/// `failed`, `ignored`).
async fn decide(
    hook: Hook,
    target: &AdmissionTarget,
    request: &admission::AdmissionRequest<DynamicObject>,
    response: AdmissionResponse,
) -> (AdmissionResponse, &'static str) {
    let registration = target.registration();
    if let Some(tenant) = &registration.tenant_namespace
        && request.namespace.as_deref() != Some(tenant.as_str())
    {
        // The namespaceSelector keeps these away; a stray one is not ours.
        return (response, "allowed");
    }
    if request
        .object
        .as_ref()
        .is_some_and(|o| o.metadata.deletion_timestamp.is_some())
    {
        // An object being deleted only sheds its finalizers: refusing that
        // (say, an object stored before a new rule) would keep it forever.
        return (response, "allowed");
    }
    let to_value = |o: &Option<DynamicObject>| o.as_ref().and_then(|o| serde_json::to_value(o).ok());
    let object = to_value(&request.object);
    let outcome = match hook {
        Hook::MutateRelated => {
            let Some(object) = object else {
                return (response, "allowed");
            };
            let parents = target.parents(request.namespace.as_deref());
            call(target, move |plugin, share| {
                plugin
                    .default_related(&object, &parents, share)
                    .map(|r| r.map(|after| (object, after)))
            })
            .await
            .map(|verdict| {
                verdict.map(|(before, after)| {
                    let patch = patch_of(&before, &after);
                    (!patch.0.is_empty()).then_some(patch)
                })
            })
        }
        Hook::Mutate => {
            let Some(object) = object else {
                return (response, "allowed");
            };
            call(target, move |plugin, share| {
                plugin.default(&object, share).map(|r| r.map(|after| (object, after)))
            })
            .await
            .map(|verdict| {
                verdict.map(|(before, after)| {
                    let patch = patch_of(&before, &after);
                    (!patch.0.is_empty()).then_some(patch)
                })
            })
        }
        Hook::Validate => {
            let req = AdmissionRequest {
                operation: match request.operation {
                    admission::Operation::Create => Operation::Create,
                    admission::Operation::Update => Operation::Update,
                    admission::Operation::Delete => Operation::Delete,
                    admission::Operation::Connect => return (response, "allowed"),
                },
                old_object: to_value(&request.old_object),
                related: target.related(request.namespace.as_deref()),
                object,
                user: UserInfo {
                    username: request.user_info.username.clone().unwrap_or_default(),
                    groups: request.user_info.groups.clone().unwrap_or_default(),
                },
                config: registration.config.clone(),
            };
            call(target, move |plugin, share| plugin.validate(&req, share))
                .await
                .map(|verdict| verdict.map(|()| None))
        }
    };
    // Objects the plugin does not own are never refused or blocked.
    let policy = match hook {
        Hook::MutateRelated => FailurePolicy::Ignore,
        _ => registration.failure_policy,
    };
    match outcome {
        Ok(Ok(None)) => (response, "allowed"),
        Ok(Err(objections)) if hook == Hook::MutateRelated => failed(
            response,
            policy,
            &format!("the plugin objects: {}", objections.join("; ")),
        ),
        Ok(Ok(Some(patch))) => match response.clone().with_patch(patch) {
            Ok(patched) => (patched, "patched"),
            Err(e) => failed(response, policy, &e.to_string()),
        },
        Ok(Err(objections)) => (response.deny(objections.join("; ")), "denied"),
        Err(failure) => {
            tracing::warn!(registration = %registration.name, hook = hook.as_str(), error = %failure, "plugin failed in admission");
            failed(response, policy, &failure.to_string())
        }
    }
}

/// The answer when the plugin gave no verdict: by `failurePolicy`, with
/// its error as the message.
fn failed(response: AdmissionResponse, policy: FailurePolicy, error: &str) -> (AdmissionResponse, &'static str) {
    match policy {
        FailurePolicy::Fail => (response.deny(format!("admission failed: {error}")), "failed"),
        FailurePolicy::Ignore => {
            let mut response = response;
            response.warnings = Some(vec![format!(
                "admitted without the plugin's check (failurePolicy Ignore): {error}"
            )]);
            (response, "ignored")
        }
    }
}

/// Runs one plugin call through the gate, in its CPU turns, on a blocking
/// thread, with the admission deadline on the call and on the answer.
async fn call<T: Send + 'static>(
    target: &AdmissionTarget,
    f: impl FnOnce(crate::runtime::Plugin, Option<Box<dyn crate::runtime::CpuShare>>) -> Result<T, RuntimeError>
    + Send
    + 'static,
) -> Result<T, CallFailure> {
    let registration = target.registration();
    let limits = registration.plugin.limits();
    let plugin = registration.plugin.with_limits(Limits {
        timeout: limits.timeout.min(CALL_DEADLINE),
        ..limits
    });
    let work = async {
        let permit = target.calls().enter(&registration.name, limits.memory_bytes).await?;
        let done = tokio::task::spawn_blocking(move || f(plugin, Some(Box::new(permit)))).await?;
        Ok(done?)
    };
    tokio::time::timeout(ANSWER_DEADLINE, work)
        .await
        .unwrap_or(Err(CallFailure::Deadline(ANSWER_DEADLINE)))
}

/// The JSONPatch turning `before` into `after`: what a mutating answer (and
/// `trellis render --admission`) carries.
pub fn patch_of(before: &Value, after: &Value) -> json_patch::Patch {
    json_patch::diff(before, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response() -> AdmissionResponse {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "X"},
                "resource": {"group": "", "version": "v1", "resource": "xs"},
                "operation": "CREATE", "userInfo": {}, "name": "a", "dryRun": false}
        }))
        .unwrap();
        let request: admission::AdmissionRequest<DynamicObject> = review.try_into().unwrap();
        AdmissionResponse::from(&request)
    }

    #[test]
    fn a_failing_plugin_is_answered_by_the_failure_policy() {
        let (fail, verdict) = failed(
            response(),
            FailurePolicy::Fail,
            "plugin p: validate ran past its deadline",
        );
        assert!(!fail.allowed);
        assert_eq!(verdict, "failed");
        assert!(
            fail.result.message.contains("ran past its deadline"),
            "{:?}",
            fail.result
        );
        let (ignore, verdict) = failed(response(), FailurePolicy::Ignore, "boom");
        assert!(ignore.allowed);
        assert_eq!(verdict, "ignored");
        assert!(ignore.warnings.unwrap()[0].contains("boom"));
    }

    #[test]
    fn the_patch_sets_only_what_the_plugin_changed() {
        let before = json!({"spec": {"image": "nginx", "n": 1}});
        let after = json!({"spec": {"image": "nginx:latest", "n": 1}});
        let patch = serde_json::to_value(patch_of(&before, &after)).unwrap();
        assert_eq!(
            patch,
            json!([{"op": "replace", "path": "/spec/image", "value": "nginx:latest"}])
        );
    }
}
