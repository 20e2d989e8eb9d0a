//! End-to-end tests of the monitoring plugins on the real control plane,
//! with kwok running the pods: selective related reads (a parent is handed,
//! and reconciled for, only the objects its `related` answer picks) and
//! decorations (annotations kept on pods the plugin does not own, removed
//! again, and only those, when the parent goes); the Prometheus sample
//! comes up with the configuration of the monitors its selectors pick.

mod common;

use common::{SETTLE, TestHost, apply_as_user, counter, dynamic_api};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
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
    quiescent_of(host, RECONCILES, quiet).await
}

/// Waits until the counter `series` has not moved for `quiet`.
async fn quiescent_of(host: &TestHost, series: &str, quiet: Duration) -> f64 {
    let mut last = counter(&host.metrics, series);
    loop {
        tokio::time::sleep(quiet).await;
        let now = counter(&host.metrics, series);
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

const PROMETHEUS_CRDS: [&str; 4] = [
    include_str!("../../deploy/crds/monitoring.coreos.com_prometheuses.yaml"),
    include_str!("../../deploy/crds/monitoring.coreos.com_servicemonitors.yaml"),
    include_str!("../../deploy/crds/monitoring.coreos.com_podmonitors.yaml"),
    include_str!("../../deploy/crds/monitoring.coreos.com_prometheusrules.yaml"),
];
const PROMETHEUS_SAMPLE: &str = include_str!("../../deploy/samples/prometheus.yaml");
const PROMETHEUS_RECONCILES: &str = r#"trellis_reconciles_total{plugin="prometheus"}"#;

fn service_monitor(name: &str, team: &str) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": name, "labels": {"team": team}},
        "spec": {"selector": {"matchLabels": {"app": name}}, "endpoints": [{"port": "web"}]}
    })
}

/// The `prometheus.yaml` of the config Secret.
async fn generated_config(secrets: &Api<Secret>) -> Result<String, String> {
    let secret = secrets.get("prometheus-prometheus").await.map_err(|e| e.to_string())?;
    let data = secret.data.unwrap_or_default();
    let config = data.get("prometheus.yaml").ok_or("no prometheus.yaml")?;
    String::from_utf8(config.0.clone()).map_err(|e| e.to_string())
}

/// The cells `kubectl get prometheus` prints for `name`, by column name,
/// as the API server's Table for the CRD's printer columns gives them.
async fn printed_columns(client: &kube::Client, namespace: &str, name: &str) -> Result<Vec<(String, String)>, String> {
    let path = format!("/apis/monitoring.coreos.com/v1/namespaces/{namespace}/prometheuses/{name}");
    let request = http::Request::get(path)
        .header("Accept", "application/json;as=Table;g=meta.k8s.io;v=v1")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let table: Value = serde_json::from_str(&client.request_text(request).await.map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let names = table["columnDefinitions"].as_array().ok_or("no columns")?;
    let cells = table["rows"][0]["cells"].as_array().ok_or("no row")?;
    Ok(names
        .iter()
        .zip(cells)
        .map(|(c, v)| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                v.to_string().trim_matches('"').to_owned(),
            )
        })
        .collect())
}

#[tokio::test]
async fn prometheus_sample_runs_its_replicas_with_the_config_of_the_monitors_it_selects() {
    common::init_logs();
    let ns = TestNamespace::create_in(shared_env_with_kwok(), "prom").await;
    let client = ns.client();
    for crd in PROMETHEUS_CRDS {
        install_crd(&client, &crd_from_yaml(crd)).await;
    }
    let host = TestHost::start(&ns, &["trellis-plugin-prometheus"]).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns.name());
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "prometheus"}})).unwrap();
    accounts.create(&PostParams::default(), &account).await.unwrap();
    let monitors = dynamic_api(&ns, "monitoring.coreos.com", "v1", "ServiceMonitor");
    apply_as_user(&monitors, &service_monitor("frontend", "frontend")).await;
    apply_as_user(&monitors, &service_monitor("backend", "backend")).await;
    apply_as_user(&monitors, &service_monitor("nobody", "nobody")).await;
    let rules = dynamic_api(&ns, "monitoring.coreos.com", "v1", "PrometheusRule");
    let rule = json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "example-rules", "labels": {"role": "alert-rules", "prometheus": "example"}},
        "spec": {"groups": [{"name": "example", "rules": [{"alert": "Down", "expr": "up == 0", "for": "5m"}]}]}
    });
    apply_as_user(&rules, &rule).await;

    let parents = dynamic_api(&ns, "monitoring.coreos.com", "v1", "Prometheus");
    let sample: Value = serde_yaml::from_str(PROMETHEUS_SAMPLE).unwrap();
    apply_as_user(&parents, &sample).await;

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns.name());
    until("3 ready replicas", SETTLE * 2, || async {
        let set = sets.get("prometheus-prometheus").await.map_err(|e| e.to_string())?;
        let ready = set.status.and_then(|s| s.ready_replicas).unwrap_or_default();
        if ready == 3 {
            Ok(())
        } else {
            Err(format!("{ready} ready"))
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    for i in 0..3 {
        let pod = pods.get(&format!("prometheus-prometheus-{i}")).await.unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers.len(), 2, "prometheus and config-reloader");
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("prometheus"),
            "used, not created"
        );
    }
    let columns = until("kubectl get prometheus to show 3 3 True True", SETTLE, || async {
        let columns = printed_columns(&client, ns.name(), "prometheus").await?;
        let cell = |name: &str| {
            columns
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let seen = [cell("Desired"), cell("Ready"), cell("Reconciled"), cell("Available")];
        if seen == ["3", "3", "True", "True"] {
            Ok(columns.clone())
        } else {
            Err(format!("{columns:?}"))
        }
    })
    .await;
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Name", "Version", "Desired", "Ready", "Reconciled", "Available", "Age"]
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    let config = generated_config(&secrets).await.unwrap();
    let frontend = format!("serviceMonitor/{}/frontend/0", ns.name());
    let backend = format!("serviceMonitor/{}/backend/0", ns.name());
    assert!(config.contains(&frontend), "{config}");
    assert!(!config.contains(&backend) && !config.contains("nobody"), "{config}");
    let rule_files = ConfigMap::clone(
        &Api::<ConfigMap>::namespaced(client.clone(), ns.name())
            .get("prometheus-prometheus-rulefiles-0")
            .await
            .unwrap(),
    );
    let rule_keys: Vec<String> = rule_files.data.unwrap_or_default().into_keys().collect();
    assert_eq!(rule_keys, [format!("{}-example-rules.yaml", ns.name())]);

    // A monitor the selectors do not pick changes: the parent is not reconciled.
    let before = quiescent_of(&host, PROMETHEUS_RECONCILES, Duration::from_secs(3)).await;
    let mut nobody = service_monitor("nobody", "nobody");
    nobody["spec"]["endpoints"][0]["interval"] = json!("15s");
    apply_as_user(&monitors, &nobody).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        counter(&host.metrics, PROMETHEUS_RECONCILES),
        before,
        "an unselected monitor's change reconciled the parent"
    );
    // The other monitor is relabelled into the selection: the config follows.
    let started = std::time::Instant::now();
    apply_as_user(&monitors, &service_monitor("backend", "frontend")).await;
    until(
        "the config to name the relabelled monitor",
        Duration::from_secs(15),
        || async {
            let config = generated_config(&secrets).await?;
            if config.contains(&backend) {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    tracing::info!(took = ?started.elapsed(), "the config followed the relabelled monitor");
    host.stop().await;
}

/// A port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn init_containers(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect()
}

#[tokio::test]
async fn jmx_exporter_injects_its_agent_into_new_matching_pods_only() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    common::init_logs();
    let ns = TestNamespace::create_in(shared_env_with_kwok(), "jmx-agent").await;
    let client = ns.client();
    install_crd(&client, &crd_from_yaml(JMX_CRD)).await;
    let port = free_port();
    let admission = trellis::admission::AdmissionOptions::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Some(format!("https://127.0.0.1:{port}")),
        ns.name(),
    )
    .unwrap();
    let plugins = tempfile::tempdir().unwrap();
    common::add_plugin(plugins.path(), JMX_PLUGIN, "jmx-exporter.wasm");
    let host = TestHost::start_in(&ns, plugins, |mut o| {
        o.admission = Some(admission);
        o
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let parents = dynamic_api(&ns, "banzaicloud.com", "v1alpha1", "PrometheusJmxExporter");
    let mut sample: Value = serde_yaml::from_str(JMX_SAMPLE).unwrap();
    sample["spec"]["agentImage"] = json!("example.com/jmx-agent:1.0");
    apply_as_user(&parents, &sample).await;

    // The webhook for new pods: confined to the host's namespace, never blocking.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = until("the mutating configuration", SETTLE, || async {
        configs
            .get_opt("trellis-jmx-exporter")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    let hook = &config.webhooks.unwrap()[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    let selector = hook.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
    assert_eq!(selector["kubernetes.io/metadata.name"], ns.name());

    // Pods are created until the webhook (and its certificate) is in place.
    let mut attempt = 0;
    let injected = until("a new dummyapp pod to get the agent", SETTLE, || {
        attempt += 1;
        let name = format!("dummy-{attempt}");
        let pods = pods.clone();
        async move {
            pod(&pods, &name, "dummyapp").await;
            let created = pods.get(&name).await.map_err(|e| e.to_string())?;
            if init_containers(&created).is_empty() {
                let _ = pods.delete(&name, &DeleteParams::default()).await;
                return Err(format!("{name} has no agent"));
            }
            Ok(created)
        }
    })
    .await;
    assert_eq!(init_containers(&injected), ["jmx-agent"]);
    let spec = injected.spec.as_ref().unwrap();
    assert_eq!(
        spec.init_containers.as_ref().unwrap()[0].image.as_deref(),
        Some("example.com/jmx-agent:1.0")
    );
    let env = spec.containers[0].env.as_ref().unwrap();
    let options = env.iter().find(|e| e.name == "JAVA_TOOL_OPTIONS").unwrap();
    assert_eq!(
        options.value.as_deref(),
        Some("-javaagent:/jmx-agent/jmx_prometheus_javaagent.jar=9400:/etc/jmx-exporter/config.yaml")
    );
    // The ConfigMap is missing, so nothing is decorated yet; the pod still runs.
    assert!(annotations(&injected)["prometheus.io/scrape"].is_null());

    // A pod of another app is admitted as it came.
    pod(&pods, "web-0", "web").await;
    assert!(init_containers(&pods.get("web-0").await.unwrap()).is_empty());
    host.stop().await;
}
