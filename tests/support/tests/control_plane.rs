//! The control plane is real: CRDs, server-side apply, owner references and
//! the garbage collector of kube-controller-manager, and (with kwok) pods
//! that become Running.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::json;
use trellis_testenv::wait::{crd_from_yaml, install_crd, until};
use trellis_testenv::{TestNamespace, shared_env_with_kwok};

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testenv.trellis.dev
spec:
  group: testenv.trellis.dev
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
"#;

fn deployment(name: &str, owner: Option<&DynamicObject>) -> serde_json::Value {
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "example.invalid/app:1" }] }
            }
        }
    });
    if let Some(owner) = owner {
        deployment["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "testenv.trellis.dev/v1",
            "kind": "Widget",
            "name": owner.metadata.name,
            "uid": owner.metadata.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
    }
    deployment
}

#[tokio::test]
async fn garbage_collector_deletes_children_of_a_deleted_custom_resource() {
    let ns = TestNamespace::create("gc").await;
    let client = ns.client();
    install_crd(&client, &crd_from_yaml(WIDGET_CRD)).await;

    let gvk = GroupVersionKind::gvk("testenv.trellis.dev", "v1", "Widget");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ApiResource::from_gvk(&gvk));
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "testenv.trellis.dev/v1",
        "kind": "Widget",
        "metadata": { "name": "w1" },
        "spec": { "size": 1 }
    }))
    .unwrap();
    let widget = widgets.create(&PostParams::default(), &widget).await.unwrap();
    assert!(widget.metadata.uid.is_some());

    let deployments: Api<Deployment> = ns.api();
    let applied = deployments
        .patch(
            "w1-app",
            &PatchParams::apply("trellis-test"),
            &Patch::Apply(deployment("w1-app", Some(&widget))),
        )
        .await
        .unwrap();
    let managers: Vec<_> = applied.metadata.managed_fields.unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m.manager.as_deref() == Some("trellis-test") && m.operation.as_deref() == Some("Apply")),
        "server-side apply records its field manager: {managers:?}"
    );

    // kube-controller-manager turns the Deployment into a ReplicaSet.
    until("the Deployment's ReplicaSet", Duration::from_secs(60), || async {
        let d = deployments.get("w1-app").await.map_err(|e| e.to_string())?;
        match d.status.as_ref().and_then(|s| s.observed_generation) {
            Some(_) => Ok(()),
            None => Err("not observed by the deployment controller yet".to_string()),
        }
    })
    .await;

    widgets.delete("w1", &DeleteParams::background()).await.unwrap();
    // The garbage collector sees a new CRD only after its discovery resync (about 30 s).
    until(
        "the garbage collector to delete the owned Deployment",
        Duration::from_secs(120),
        || async {
            match deployments.get_opt("w1-app").await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(d) => Err(format!(
                    "still there (deletionTimestamp {:?})",
                    d.metadata.deletion_timestamp
                )),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn pods_of_a_deployment_become_running_with_kwok() {
    let ns = TestNamespace::create_in(shared_env_with_kwok(), "kwok").await;
    let deployments: Api<Deployment> = ns.api();
    deployments
        .patch(
            "web",
            &PatchParams::apply("trellis-test"),
            &Patch::Apply(deployment("web", None)),
        )
        .await
        .unwrap();
    until(
        "the Deployment to report a ready replica",
        Duration::from_secs(90),
        || async {
            let d = deployments.get("web").await.map_err(|e| e.to_string())?;
            let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            if ready == 1 {
                Ok(())
            } else {
                Err(format!("status: {:?}", d.status))
            }
        },
    )
    .await;
    let pods: Api<Pod> = ns.api();
    let pods = pods.list(&Default::default()).await.unwrap();
    let phases: Vec<_> = pods
        .items
        .iter()
        .map(|p| p.status.as_ref().and_then(|s| s.phase.clone()))
        .collect();
    assert_eq!(phases, vec![Some("Running".to_string())]);
}
