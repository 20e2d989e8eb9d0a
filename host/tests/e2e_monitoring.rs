//! End-to-end tests of the monitoring plugins on the real control plane,
//! with kwok running the pods: selective related reads (a parent is handed,
//! and reconciled for, only the objects its `related` answer picks) and
//! decorations (annotations kept on pods the plugin does not own, removed
//! again, and only those, when the parent goes).

mod common;

use common::{SETTLE, TestHost, apply_as_user, counter, dynamic_api};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;
use trellis_testenv::wait::{crd_from_yaml, install_crd, until};
use trellis_testenv::{TestNamespace, shared_env_with_kwok};

const JMX_CRD: &str = include_str!("../../deploy/crds/banzaicloud.com_prometheusjmxexporters.yaml");
const JMX_SAMPLE: &str = include_str!("../../deploy/samples/prometheusjmxexporter.yaml");
const JMX_PLUGIN: &str = "trellis-plugin-jmx-exporter";
const RECONCILES: &str = r#"trellis_reconciles_total{plugin="jmx-exporter"}"#;
/// The annotations the plugin sets on each scraped pod.
const SET: [&str; 3] = [
    "prometheus.io/scrape",
    "prometheus.io/port",
    "banzaicloud.com/prometheus-jmx-exporter",
];

async fn pod(pods: &Api<Pod>, name: &str, app: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "main", "image": "example.com/jvm-app:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.expect("the pod");
}

fn annotations(pod: &Pod) -> Value {
    serde_json::to_value(pod.metadata.annotations.clone().unwrap_or_default()).unwrap()
}

fn endpoints(parent: &DynamicObject) -> Vec<String> {
    parent.data["status"]["metricsEndpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some(format!("{}:{}", e["pod"].as_str()?, e["port"])))
        .collect()
}

async fn eventually_endpoints(parents: &Api<DynamicObject>, name: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|p| format!("{p}:9400")).collect();
    until(&format!("{name} to list {want:?}"), SETTLE, || async {
        let parent = parents.get(name).await.map_err(|e| e.to_string())?;
        let seen = endpoints(&parent);
        if seen == want {
            Ok(())
        } else {
            Err(format!("status lists {seen:?}"))
        }
    })
    .await;
}

async fn eventually_annotated(pods: &Api<Pod>, name: &str, scraped: bool) -> Pod {
    until(&format!("pod {name} scraped={scraped}"), SETTLE, || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let a = annotations(&pod);
        let has = SET.iter().filter(|k| !a[**k].is_null()).count();
        match (scraped, has) {
            (true, 3) if a["prometheus.io/port"] == "9400" && a["prometheus.io/scrape"] == "true" => Ok(pod),
            (false, 0) => Ok(pod),
            _ => Err(format!("annotations {a}")),
        }
    })
    .await
}

/// Waits until no reconcile of the plugin has started for `quiet`.
async fn quiescent(host: &TestHost, quiet: Duration) -> f64 {
    let mut last = counter(&host.metrics, RECONCILES);
    loop {
        tokio::time::sleep(quiet).await;
        let now = counter(&host.metrics, RECONCILES);
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn jmx_exporter_decorates_only_its_running_pods_and_removes_only_what_it_set() {
    common::init_logs();
    let ns = TestNamespace::create_in(shared_env_with_kwok(), "jmx").await;
    let client = ns.client();
    install_crd(&client, &crd_from_yaml(JMX_CRD)).await;
    let host = TestHost::start(&ns, &[JMX_PLUGIN]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let parents = dynamic_api(&ns, "banzaicloud.com", "v1alpha1", "PrometheusJmxExporter");

    for name in ["dummy-0", "dummy-1", "dummy-2"] {
        pod(&pods, name, "dummyapp").await;
    }
    pod(&pods, "web-0", "web").await;
    pod(&pods, "unrelated-0", "unrelated").await;
    // Somebody else's label and annotation on a pod the plugin decorates.
    let theirs = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"owner": "team-a"}, "annotations": {"team-a/note": "keep"}}});
    pods.patch("dummy-0", &PatchParams::apply("team-a"), &Patch::Apply(&theirs))
        .await
        .unwrap();

    // The sample, unchanged; its ConfigMap is missing at first.
    let sample: Value = serde_yaml::from_str(JMX_SAMPLE).unwrap();
    apply_as_user(&parents, &sample).await;
    let missing = common::eventually_ready_is(&parents, "example-prom-jmx-exp", "False", "ConfigMapNotFound").await;
    assert!(missing.contains("prometheus-jmx-exporter-config"), "{missing}");
    assert!(annotations(&pods.get("dummy-0").await.unwrap())["prometheus.io/scrape"].is_null());

    let config: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "prometheus-jmx-exporter-config"},
        "data": {"config.yaml": "rules:\n- pattern: \".*\"\n"}
    }))
    .unwrap();
    config_maps.create(&PostParams::default(), &config).await.unwrap();
    // A second parent of the same plugin, for the web pods.
    let mut web = sample.clone();
    web["metadata"]["name"] = json!("web-exporter");
    web["spec"]["labelSelector"] = json!({"app": "web"});
    apply_as_user(&parents, &web).await;

    common::eventually_ready_is(&parents, "example-prom-jmx-exp", "True", "EndpointsDecorated").await;
    eventually_endpoints(&parents, "example-prom-jmx-exp", &["dummy-0", "dummy-1", "dummy-2"]).await;
    eventually_endpoints(&parents, "web-exporter", &["web-0"]).await;
    for name in ["dummy-0", "dummy-1", "dummy-2", "web-0"] {
        let pod = eventually_annotated(&pods, name, true).await;
        let marker = &annotations(&pod)["banzaicloud.com/prometheus-jmx-exporter"];
        let parent = if name == "web-0" {
            "web-exporter"
        } else {
            "example-prom-jmx-exp"
        };
        assert_eq!(marker, parent, "{name}");
    }
    let unrelated = pods.get("unrelated-0").await.unwrap();
    assert!(
        annotations(&unrelated)["prometheus.io/scrape"].is_null(),
        "not selected, not decorated"
    );
    let managers: Vec<String> = pods
        .get("dummy-1")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m.starts_with("trellis/jmx-exporter/decorate/")),
        "{managers:?}"
    );
    assert!(
        pods.get("dummy-0").await.unwrap().metadata.owner_references.is_none(),
        "never owned"
    );

    // Selective reads: a change of a pod no parent selects reconciles no parent.
    let before = quiescent(&host, Duration::from_secs(3)).await;
    let touch = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"touched": "1"}}});
    pods.patch("unrelated-0", &PatchParams::apply("someone"), &Patch::Apply(&touch))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        counter(&host.metrics, RECONCILES),
        before,
        "an unselected pod's change reconciled a parent"
    );
    // ... and one of the web pods reconciles the web parent only.
    pods.patch("web-0", &PatchParams::apply("someone"), &Patch::Apply(&touch))
        .await
        .unwrap();
    let after = until("the web parent's reconcile", SETTLE, || async {
        let now = counter(&host.metrics, RECONCILES);
        if now > before {
            Ok(now)
        } else {
            Err("no reconcile yet".to_owned())
        }
    })
    .await;
    let settled = quiescent(&host, Duration::from_secs(3)).await;
    assert_eq!(
        settled - before,
        1.0,
        "one parent reconciled for its pod (first seen {after})"
    );

    // A fourth matching pod is added.
    pod(&pods, "dummy-3", "dummyapp").await;
    eventually_endpoints(
        &parents,
        "example-prom-jmx-exp",
        &["dummy-0", "dummy-1", "dummy-2", "dummy-3"],
    )
    .await;
    eventually_annotated(&pods, "dummy-3", true).await;

    // Deleting the parent removes what it set, and only that.
    parents
        .delete("example-prom-jmx-exp", &DeleteParams::default())
        .await
        .unwrap();
    for name in ["dummy-0", "dummy-1", "dummy-2", "dummy-3"] {
        eventually_annotated(&pods, name, false).await;
    }
    let kept = pods.get("dummy-0").await.unwrap();
    assert_eq!(kept.metadata.labels.as_ref().unwrap()["owner"], "team-a");
    assert_eq!(annotations(&kept)["team-a/note"], "keep");
    until("the parent to be gone", SETTLE, || async {
        match parents.get_opt("example-prom-jmx-exp").await {
            Ok(None) => Ok(()),
            Ok(Some(p)) => Err(format!("still there: finalizers {:?}", p.metadata.finalizers)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    // The other parent's pod keeps its decoration.
    eventually_annotated(&pods, "web-0", true).await;
    host.stop().await;
}
