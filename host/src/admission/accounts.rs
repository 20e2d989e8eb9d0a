//! Who may name a ServiceAccount (opt-in, `--check-service-account-use`):
//! the host validates every create and update of a `ReconcilerPlugin` or
//! `ClusterReconcilerPlugin` that names a ServiceAccount, asking the API
//! with a SubjectAccessReview whether the requesting user may `impersonate`
//! it. So nobody registers a plugin acting with rights they could not use
//! themselves, the rule Kubernetes lacks for Pods.

use super::configs::{Endpoint, MANAGED_BY};
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::admission::{self, AdmissionResponse, AdmissionReview};
use std::collections::BTreeMap;

/// The path of the check.
pub const PATH: &str = "/validate-registrations";
/// The name of its configuration.
pub const CONFIG_NAME: &str = "trellis-registrations";

/// The ServiceAccount `namespace/name` a registration object names, if any.
pub fn named_account(object: &DynamicObject) -> Option<(String, String)> {
    let spec = &object.data["spec"];
    match object.types.as_ref().map(|t| t.kind.as_str()) {
        Some("ReconcilerPlugin") => {
            let name = spec["serviceAccountName"].as_str()?;
            Some((object.metadata.namespace.clone()?, name.to_owned()))
        }
        Some("ClusterReconcilerPlugin") => {
            let reference = &spec["serviceAccountRef"];
            Some((
                reference["namespace"].as_str()?.to_owned(),
                reference["name"].as_str()?.to_owned(),
            ))
        }
        _ => None,
    }
}

/// The configuration that sends registrations to the check.
pub fn configuration(endpoint: &Endpoint, ca_bundle: &str) -> ValidatingWebhookConfiguration {
    let client_config = super::configs::client_config(endpoint, PATH, ca_bundle);
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIG_NAME.to_owned()),
            labels: Some(BTreeMap::from([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())])),
            ..Default::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: "service-accounts.registrations.trellis.dev".into(),
            admission_review_versions: vec!["v1".into()],
            client_config,
            failure_policy: Some("Fail".into()),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["trellis.dev".into()]),
                api_versions: Some(vec!["*".into()]),
                resources: Some(vec!["reconcilerplugins".into(), "clusterreconcilerplugins".into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                scope: Some("*".into()),
            }]),
            side_effects: "None".into(),
            timeout_seconds: Some(super::configs::TIMEOUT_SECONDS),
            ..Default::default()
        }]),
    }
}

/// Answers a review of a registration object.
pub async fn answer(client: &kube::Client, review: AdmissionReview<DynamicObject>) -> AdmissionReview<DynamicObject> {
    let request: admission::AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => return AdmissionResponse::invalid(format!("not an AdmissionReview request: {e}")).into_review(),
    };
    let response = AdmissionResponse::from(&request);
    let Some(account) = request.object.as_ref().and_then(named_account) else {
        return response.into_review();
    };
    if request.old_object.as_ref().and_then(named_account).as_ref() == Some(&account) {
        // Unchanged: whoever may edit the registration may keep it.
        return response.into_review();
    }
    let user = &request.user_info;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("impersonate".into()),
                resource: Some("serviceaccounts".into()),
                group: Some(String::new()),
                namespace: Some(account.0.clone()),
                name: Some(account.1.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let who = user.username.clone().unwrap_or_default();
    match Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
    {
        Ok(reviewed) if reviewed.status.as_ref().is_some_and(|s| s.allowed) => response.into_review(),
        Ok(_) => response
            .deny(format!(
                "{who} may not impersonate ServiceAccount {}/{}, so may not register a plugin acting as it",
                account.0, account.1
            ))
            .into_review(),
        Err(e) => response
            .deny(format!(
                "cannot check whether {who} may impersonate ServiceAccount {}/{}: {e}",
                account.0, account.1
            ))
            .into_review(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_named_account_is_read_from_either_kind() {
        let tenant: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ReconcilerPlugin",
            "metadata": {"name": "p", "namespace": "team-a"}, "spec": {"serviceAccountName": "bot"}}))
            .unwrap();
        assert_eq!(named_account(&tenant), Some(("team-a".into(), "bot".into())));
        let cluster: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ClusterReconcilerPlugin",
            "metadata": {"name": "p"}, "spec": {"serviceAccountRef": {"namespace": "ops", "name": "deployer"}}}),
        )
        .unwrap();
        assert_eq!(named_account(&cluster), Some(("ops".into(), "deployer".into())));
        let unnamed: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ClusterReconcilerPlugin",
            "metadata": {"name": "p"}, "spec": {}}),
        )
        .unwrap();
        assert_eq!(named_account(&unnamed), None);
    }
}
