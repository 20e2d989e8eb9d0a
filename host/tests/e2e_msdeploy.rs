//! The msdeploy plugin end to end on a real control plane: the sample
//! produces its children, and the host keeps them as the plugin wants them
//! through edits, deletions, hand changes and restarts, without writing when
//! nothing changed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ResourceQuota, Service, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::until;

const NAME: &str = "ms-sample-v1s0";
/// The Namespace label that dedicates a namespace to one instance (plugins/msdeploy/README.md).
const DEDICATED_TO: &str = "msdeploy.trellis.dev/dedicated-to";
const APPLIED: &str = r#"trellis_writes_total{plugin="msdeploy",write="applied"}"#;

/// A namespace with the CRD installed and a host serving msdeploy in it.
async fn setup(test: &str) -> (TestNamespace, TestHost) {
    let ns = TestNamespace::create(test).await;
    install_msdeploy_crd(&ns.client()).await;
    let host = TestHost::start(&ns, &["trellis-plugin-msdeploy"]).await;
    (ns, host)
}

/// Applies the sample and waits until the host has reconciled it (status observed).
async fn apply_sample(ns: &TestNamespace, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut sample = msdeploy_sample();
    edit(&mut sample);
    let parents = msdeploy_api(ns);
    let applied = apply_as_user(&parents, &sample).await;
    let generation = applied.metadata.generation;
    until("the parent's status to observe its generation", SETTLE, || async {
        let parent = parents.get(NAME).await.map_err(|e| e.to_string())?;
        let observed = parent.data["status"]["observedGeneration"].as_i64();
        if observed.is_some() && observed == generation {
            Ok(())
        } else {
            Err(format!("status: {}", parent.data["status"]))
        }
    })
    .await;
}

#[tokio::test]
async fn the_sample_produces_its_children_owned_by_the_parent() {
    let (ns, _host) = setup("msd-children").await;
    apply_sample(&ns, |_| {}).await;
    let parent = msdeploy_api(&ns).get(NAME).await.unwrap();
    let uid = parent.metadata.uid.clone().unwrap();

    let deployment = eventually_exists(&ns.api::<Deployment>(), NAME).await;
    eventually_exists(&ns.api::<Service>(), NAME).await;
    eventually_exists(&ns.api::<ServiceAccount>(), NAME).await;
    eventually_exists(&ns.api::<ConfigMap>(), &format!("{NAME}-config")).await;
    eventually_exists(&ns.api::<HorizontalPodAutoscaler>(), NAME).await;
    // The test namespace is shared (not dedicated to the instance): no quota.
    let quotas = ns.api::<ResourceQuota>().list(&ListParams::default()).await.unwrap();
    assert!(quotas.items.is_empty(), "{:?}", quotas.items);
    assert_eq!(
        condition(&parent, "Quota").map(|(status, reason, _)| (status, reason)),
        Some(("False".to_owned(), "NamespaceShared".to_owned()))
    );

    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("MicroServiceDeploy", uid.as_str(), Some(true))
    );
    let labels = deployment.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("trellis.dev/plugin").map(String::as_str), Some("msdeploy"));
    let managers: Vec<_> = deployment
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"trellis/msdeploy".to_string()), "{managers:?}");
    let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("just a image url"));

    let status = &parent.data["status"];
    assert!(
        status["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready")),
        "{status}"
    );
}

/// The condition of `type_` on the parent as (status, reason, message).
fn condition(parent: &kube::api::DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let found = parent.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |k: &str| found[k].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// A bare pod with no resource limits, as any other workload of the namespace.
fn plain_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}
    }))
    .unwrap()
}

/// Sets or removes the label that dedicates the namespace to `instance`.
async fn dedicate(ns: &TestNamespace, instance: Option<&str>) {
    let namespaces: kube::Api<Namespace> = kube::Api::all(ns.client());
    let patch = json!({"metadata": {"labels": {DEDICATED_TO: instance}}});
    namespaces
        .patch(ns.name(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn in_a_shared_namespace_no_quota_governs_other_workloads_or_instances() {
    let (ns, _host) = setup("msd-shared").await;
    apply_sample(&ns, |_| {}).await;
    // A second instance beside the first, with requirements of its own.
    let second = "ms-other-v1s0";
    apply_sample(&ns, |s| {
        s["metadata"]["name"] = json!(second);
        s["spec"]["fullName"] = json!(second);
        s["spec"]["resourceRequirements"]["limits"]["cpu"] = json!("1");
        s["spec"]["resourceRequirements"]["requests"]["cpu"] = json!("1");
    })
    .await;
    eventually_exists(&ns.api::<Deployment>(), second).await;
    let quotas = ns.api::<ResourceQuota>().list(&ListParams::default()).await.unwrap();
    assert!(
        quotas.items.is_empty(),
        "no quota in a shared namespace: {:?}",
        quotas.items
    );
    // A workload that is not a microservice's runs without limits.
    ns.api::<Pod>()
        .create(&Default::default(), &plain_pod("unrelated"))
        .await
        .expect("a pod without limits is admitted in a shared namespace");
    for name in [NAME, second] {
        let parent = msdeploy_api(&ns).get(name).await.unwrap();
        let (status, reason, message) = condition(&parent, "Quota").expect("a Quota condition");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "NamespaceShared"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn the_quota_exists_only_while_the_namespace_is_dedicated_to_the_instance() {
    let (ns, _host) = setup("msd-dedicated").await;
    dedicate(&ns, Some(NAME)).await;
    apply_sample(&ns, |_| {}).await;
    let quota = eventually_exists(&ns.api::<ResourceQuota>(), &format!("{NAME}-quota")).await;
    let hard = quota.spec.unwrap().hard.unwrap();
    assert_eq!(
        hard["limits.cpu"].0, "20",
        "(autoscaler max 9 + 1 surge) x 2 CPU: {hard:?}"
    );
    let parent = msdeploy_api(&ns).get(NAME).await.unwrap();
    assert_eq!(
        condition(&parent, "Quota").map(|(status, reason, _)| (status, reason)),
        Some(("True".to_owned(), "NamespaceDedicated".to_owned()))
    );
    // The namespace is the instance's own: the quota governs it.
    // (The API server's quota cache may lag the quota by a moment: a new name per try.)
    let tries = std::sync::atomic::AtomicUsize::new(0);
    until("a pod without limits to be refused by the quota", SETTLE, || async {
        let name = format!("unlimited-{}", tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        match ns.api::<Pod>().create(&Default::default(), &plain_pod(&name)).await {
            Err(kube::Error::Api(e)) if e.message.contains(&format!("{NAME}-quota")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Dedicated to another instance, or to none: the quota goes.
    dedicate(&ns, Some("someone-else")).await;
    eventually_gone(&ns.api::<ResourceQuota>(), &format!("{NAME}-quota")).await;
    until("the Quota condition to name the other instance", SETTLE, || async {
        let parent = msdeploy_api(&ns).get(NAME).await.map_err(|e| e.to_string())?;
        match condition(&parent, "Quota") {
            Some((status, reason, message))
                if reason == "NamespaceDedicatedToOther" && message.contains("someone-else") =>
            {
                assert_eq!(status, "False");
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn an_object_of_the_same_name_that_is_not_ours_is_never_taken_over() {
    let (ns, _host) = setup("msd-takeover").await;
    // Somebody else's ConfigMap, named as the sample's config child.
    let config_name = format!("{NAME}-config");
    let foreign: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": config_name, "labels": {"team": "theirs"}},
        "data": {"config": "theirs"}
    }))
    .unwrap();
    let before = ns
        .api::<ConfigMap>()
        .create(&Default::default(), &foreign)
        .await
        .unwrap();
    apply_as_user(&msdeploy_api(&ns), &msdeploy_sample()).await;
    let message = eventually_ready_is(&msdeploy_api(&ns), NAME, "False", "ChildNotOwned").await;
    assert!(message.contains(&config_name), "{message}");
    // A second instance whose children would take the first one's names:
    // the plugin's own objects of another parent are not taken over either.
    let twin = "ms-twin";
    let mut second = msdeploy_sample();
    second["metadata"]["name"] = json!(twin);
    second["spec"].as_object_mut().unwrap().remove("config");
    apply_as_user(&msdeploy_api(&ns), &second).await;
    eventually_ready_is(&msdeploy_api(&ns), twin, "False", "ChildNotOwned").await;

    let after = ns.api::<ConfigMap>().get(&config_name).await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "not written"
    );
    assert!(after.metadata.owner_references.is_none());
    let deployment = ns.api::<Deployment>().get(NAME).await.unwrap();
    let owners = deployment.metadata.owner_references.unwrap_or_default();
    let first_uid = msdeploy_api(&ns).get(NAME).await.unwrap().metadata.uid;
    assert_eq!(owners.len(), 1);
    assert_eq!(
        Some(owners[0].uid.clone()),
        first_uid,
        "the twin did not take the Deployment"
    );
}

#[tokio::test]
async fn a_steady_state_makes_no_writes() {
    let (ns, host) = setup("msd-steady").await;
    apply_sample(&ns, |s| s["spec"]["autoscaling"] = json!(false)).await;
    eventually_exists(&ns.api::<Service>(), NAME).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let versions = |ns: &TestNamespace| {
        let (sa, cm, svc, parents) = (
            ns.api::<ServiceAccount>(),
            ns.api::<ConfigMap>(),
            ns.api::<Service>(),
            msdeploy_api(ns),
        );
        async move {
            BTreeMap::from([
                ("serviceaccount", sa.get(NAME).await.unwrap().metadata.resource_version),
                (
                    "configmap",
                    cm.get(&format!("{NAME}-config"))
                        .await
                        .unwrap()
                        .metadata
                        .resource_version,
                ),
                ("service", svc.get(NAME).await.unwrap().metadata.resource_version),
                ("parent", parents.get(NAME).await.unwrap().metadata.resource_version),
            ])
        }
    };
    let before = versions(&ns).await;
    let applied_before = counter(&host.metrics, APPLIED);
    let reconciles_before = counter(&host.metrics, r#"trellis_reconciles_total{plugin="msdeploy"}"#);

    // Re-apply the same spec (no change) and touch a label: both trigger reconciles.
    apply_sample(&ns, |s| s["spec"]["autoscaling"] = json!(false)).await;
    let parents = msdeploy_api(&ns);
    let touched = parents
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    until("another reconcile", SETTLE, || async {
        let now = counter(&host.metrics, r#"trellis_reconciles_total{plugin="msdeploy"}"#);
        if now > reconciles_before {
            Ok(())
        } else {
            Err(format!("{now} reconciles"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut after = versions(&ns).await;
    // The label edit itself changed the parent; nothing the host wrote did.
    after.remove("parent");
    let mut expected = before.clone();
    expected.remove("parent");
    assert_eq!(after, expected, "children were rewritten in a steady state");
    assert_eq!(
        counter(&host.metrics, APPLIED),
        applied_before,
        "the host applied children although nothing changed"
    );
    let parent = parents.get(NAME).await.unwrap();
    assert_eq!(
        parent.metadata.resource_version, touched.metadata.resource_version,
        "the host wrote the parent's status although nothing changed"
    );
}

#[tokio::test]
async fn editing_the_parent_updates_its_children() {
    let (ns, _host) = setup("msd-edit").await;
    apply_sample(&ns, |_| {}).await;
    eventually_exists(&ns.api::<Deployment>(), NAME).await;
    apply_sample(&ns, |s| {
        s["spec"]["image"] = json!("registry.example/ms:2.0");
        s["spec"]["replicas"] = json!(4);
    })
    .await;
    let deployments = ns.api::<Deployment>();
    until("the Deployment to run the new image", SETTLE, || async {
        let d = deployments.get(NAME).await.map_err(|e| e.to_string())?;
        let image = d.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
        if image.as_deref() == Some("registry.example/ms:2.0") {
            Ok(())
        } else {
            Err(format!("image {image:?}"))
        }
    })
    .await;
    let hpa = ns.api::<HorizontalPodAutoscaler>().get(NAME).await.unwrap();
    assert_eq!(hpa.spec.unwrap().min_replicas, Some(4));
}

#[tokio::test]
async fn a_child_deleted_by_hand_comes_back_and_a_hand_edit_is_restored() {
    let (ns, _host) = setup("msd-drift").await;
    apply_sample(&ns, |_| {}).await;
    let services = ns.api::<Service>();
    let service = eventually_exists(&services, NAME).await;
    services.delete(NAME, &DeleteParams::default()).await.unwrap();
    until("the Service to come back", SETTLE, || async {
        match services.get_opt(NAME).await.map_err(|e| e.to_string())? {
            Some(s) if s.metadata.uid != service.metadata.uid => Ok(()),
            other => Err(format!("uid {:?}", other.and_then(|s| s.metadata.uid))),
        }
    })
    .await;

    // `kubectl edit` of a field the plugin owns: the host puts it back.
    let deployments = ns.api::<Deployment>();
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "ms-sample", "image": "hand/edited:1"}]}}}});
    deployments
        .patch(NAME, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    until("the hand-edited image to be restored", SETTLE, || async {
        let d = deployments.get(NAME).await.map_err(|e| e.to_string())?;
        let images: Vec<_> = d
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers
            .into_iter()
            .map(|c| c.image)
            .collect();
        if images == vec![Some("just a image url".to_string())] {
            Ok(())
        } else {
            Err(format!("images {images:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn turning_autoscaling_off_prunes_the_hpa_and_deleting_the_parent_removes_everything() {
    let (ns, _host) = setup("msd-prune").await;
    apply_sample(&ns, |_| {}).await;
    let hpas = ns.api::<HorizontalPodAutoscaler>();
    eventually_exists(&hpas, NAME).await;
    apply_sample(&ns, |s| s["spec"]["autoscaling"] = json!(false)).await;
    eventually_gone(&hpas, NAME).await;
    let deployments = ns.api::<Deployment>();
    until("the Deployment to own its replicas again", SETTLE, || async {
        let d = deployments.get(NAME).await.map_err(|e| e.to_string())?;
        let replicas = d.spec.and_then(|s| s.replicas);
        if replicas == Some(3) {
            Ok(())
        } else {
            Err(format!("replicas {replicas:?}"))
        }
    })
    .await;

    msdeploy_api(&ns)
        .delete(NAME, &DeleteParams::foreground())
        .await
        .unwrap();
    eventually_gone(&msdeploy_api(&ns), NAME).await;
    let owned = ListParams::default().labels("app.kubernetes.io/managed-by=trellis");
    until("every child to be deleted", Duration::from_secs(120), || async {
        let left = ns
            .api::<Deployment>()
            .list(&owned)
            .await
            .map_err(|e| e.to_string())?
            .items
            .len()
            + ns.api::<Service>()
                .list(&owned)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len()
            + ns.api::<ConfigMap>()
                .list(&owned)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len()
            + ns.api::<ServiceAccount>()
                .list(&owned)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} children left"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_restarted_host_loses_nothing_and_duplicates_nothing() {
    let (ns, host) = setup("msd-restart").await;
    apply_sample(&ns, |_| {}).await;
    let deployments = ns.api::<Deployment>();
    let first = eventually_exists(&deployments, NAME).await;
    let service = eventually_exists(&ns.api::<Service>(), NAME).await;

    // The host dies; the user edits the parent meanwhile.
    let plugins = host.kill();
    let parents = msdeploy_api(&ns);
    let mut sample = msdeploy_sample();
    sample["spec"]["image"] = json!("registry.example/ms:3.0");
    apply_as_user(&parents, &sample).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // (kube-controller-manager still writes the Deployment's status; its spec stays.)
    let unchanged = deployments.get(NAME).await.unwrap();
    let image = unchanged.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("just a image url"), "no host, no writes");
    let service_now = ns.api::<Service>().get(NAME).await.unwrap();
    assert_eq!(
        service_now.metadata.resource_version, service.metadata.resource_version,
        "no host, no writes"
    );

    let _host = TestHost::start_in(&ns, plugins, |o| o).await;
    until(
        "the edit made while the host was down to be applied",
        SETTLE,
        || async {
            let d = deployments.get(NAME).await.map_err(|e| e.to_string())?;
            let image = d.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
            if image.as_deref() == Some("registry.example/ms:3.0") {
                Ok(())
            } else {
                Err(format!("image {image:?}"))
            }
        },
    )
    .await;
    let after = deployments.get(NAME).await.unwrap();
    assert_eq!(
        after.metadata.uid, first.metadata.uid,
        "the Deployment was replaced, not updated"
    );
    let services = ns.api::<Service>().list(&ListParams::default()).await.unwrap();
    assert_eq!(services.items.len(), 1, "duplicated Services");
    assert_eq!(services.items[0].metadata.uid, service.metadata.uid);
    let deployments = deployments.list(&ListParams::default()).await.unwrap();
    assert_eq!(deployments.items.len(), 1, "duplicated Deployments");
}
