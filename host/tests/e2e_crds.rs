//! The CRDs of the bundled plugins' kinds (`deploy/crds`) on the real
//! kube-apiserver: each accepts the sample users already write exactly as
//! written, keeping every field of it, and refuses nonsense with a message
//! that names the field and what is wrong with it.

mod common;

use common::dynamic_api;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::{crd_from_yaml, install_crd};

const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/samples/");

/// A namespace of its own with `crd` installed; the API of the sample's kind, and the sample.
async fn setup(prefix: &str, crd: &str, sample: &str) -> (TestNamespace, Api<DynamicObject>, Value) {
    let ns = TestNamespace::create(prefix).await;
    install_crd(&ns.client(), &crd_from_yaml(crd)).await;
    let text = std::fs::read_to_string(format!("{SAMPLES}{sample}")).expect("the sample");
    let sample: Value = serde_yaml::from_str(&text).expect("the sample parses");
    let (group, version) = sample["apiVersion"].as_str().unwrap().split_once('/').unwrap();
    let api = dynamic_api(&ns, group, version, sample["kind"].as_str().unwrap());
    (ns, api, sample)
}

/// Creates `object`, expects it stored with its spec as sent (nothing
/// pruned), and deletes it again so that a variant may reuse the name.
async fn accepts(api: &Api<DynamicObject>, object: &Value) {
    let sent: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    let created = api
        .create(&PostParams::default(), &sent)
        .await
        .unwrap_or_else(|e| panic!("{object} was refused: {e}"));
    assert_eq!(created.data["spec"], object["spec"], "the spec was not kept as sent");
    api.delete(&created.metadata.name.unwrap(), &DeleteParams::default())
        .await
        .expect("the object deletes");
}

/// Creates `object` and expects it refused as invalid, with `why` in the message.
async fn refuses(api: &Api<DynamicObject>, object: &Value, why: &str) {
    let sent: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    match api.create(&PostParams::default(), &sent).await {
        Err(kube::Error::Api(status)) if status.code == 422 => {
            assert!(
                status.message.contains(why),
                "{object}: expected {why:?} in: {}",
                status.message
            );
        }
        Err(e) => panic!("{object}: expected a refusal with {why:?}, got: {e}"),
        Ok(_) => panic!("{object} was accepted; expected a refusal with {why:?}"),
    }
}

/// `sample` with the field at `pointer` set to `value`, or removed for `None`.
fn with(sample: &Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, field) = pointer.rsplit_once('/').unwrap();
    let mut edited = sample.clone();
    let parent = edited
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent} in the sample"));
    match (parent, value) {
        (Value::Object(fields), Some(value)) => {
            fields.insert(field.into(), value);
        }
        (Value::Object(fields), None) => {
            fields.remove(field);
        }
        (Value::Array(items), Some(value)) => items[field.parse::<usize>().unwrap()] = value,
        (other, _) => panic!("cannot edit {field} of {other}"),
    }
    edited
}

/// `sample` with the field at `pointer` set to `value`.
fn set(sample: &Value, pointer: &str, value: Value) -> Value {
    with(sample, pointer, Some(value))
}

/// `sample` without the field at `pointer`.
fn without(sample: &Value, pointer: &str) -> Value {
    with(sample, pointer, None)
}

#[tokio::test]
async fn etcd_cluster() {
    let (_ns, api, etcd) = setup(
        "crd-etcd",
        include_str!("../../deploy/crds/etcd.database.coreos.com_etcdclusters.yaml"),
        "etcdcluster.yaml",
    )
    .await;
    accepts(&api, &etcd).await;
    // Sizes the plugin explains in the status itself, and the other fields.
    accepts(&api, &set(&etcd, "/spec/size", json!(0))).await;
    accepts(&api, &set(&etcd, "/spec/size", json!(10))).await;
    let spec = json!({"size": 5, "version": "v3.5.9", "repository": "quay.io/coreos/etcd", "paused": true});
    accepts(&api, &set(&etcd, "/spec", spec)).await;

    let at_least_zero = "spec.size in body should be greater than or equal to 0";
    refuses(&api, &set(&etcd, "/spec/size", json!(-1)), at_least_zero).await;
    let integer = "spec.size in body must be of type integer";
    refuses(&api, &set(&etcd, "/spec/size", json!("three")), integer).await;
    refuses(&api, &without(&etcd, "/spec/size"), "spec.size: Required value").await;
    let semver = r"spec.version in body should match '^v?[0-9]+\.[0-9]+\.[0-9]+$'";
    refuses(&api, &set(&etcd, "/spec/version", json!("latest")), semver).await;
    refuses(&api, &without(&etcd, "/spec"), "spec: Required value").await;
}

#[tokio::test]
async fn redis_enterprise_cluster() {
    let (_ns, api, redis) = setup(
        "crd-redis",
        include_str!("../../deploy/crds/app.redislabs.com_redisenterpriseclusters.yaml"),
        "redisenterprisecluster.yaml",
    )
    .await;
    accepts(&api, &redis).await; // `enabled: 'true'`, a string
    for enabled in [json!(true), json!(false), json!("false")] {
        accepts(&api, &set(&redis, "/spec/persistentSpec/enabled", enabled)).await;
    }
    for size in [json!("10Gi"), json!(10)] {
        accepts(&api, &set(&redis, "/spec/persistentSpec/volumeSize", size)).await;
    }

    let enabled = r#"spec.persistentSpec.enabled: Unsupported value: "maybe""#;
    refuses(
        &api,
        &set(&redis, "/spec/persistentSpec/enabled", json!("maybe")),
        enabled,
    )
    .await;
    let ui =
        r#"spec.uiServiceType: Unsupported value: "Bogus": supported values: "ClusterIP", "NodePort", "LoadBalancer""#;
    refuses(&api, &set(&redis, "/spec/uiServiceType", json!("Bogus")), ui).await;
    let nodes = "spec.nodes in body should be greater than or equal to 1";
    refuses(&api, &set(&redis, "/spec/nodes", json!(0)), nodes).await;
    let nodes = "spec.nodes in body should be less than or equal to 100";
    refuses(&api, &set(&redis, "/spec/nodes", json!(101)), nodes).await;
    let pull = r#"spec.redisEnterpriseImageSpec.imagePullPolicy: Unsupported value: "Sometimes""#;
    let policy = "/spec/redisEnterpriseImageSpec/imagePullPolicy";
    refuses(&api, &set(&redis, policy, json!("Sometimes")), pull).await;
}

#[tokio::test]
async fn app_service() {
    let (_ns, api, app) = setup(
        "crd-appservice",
        include_str!("../../deploy/crds/app.example.com_appservices.yaml"),
        "appservice.yaml",
    )
    .await;
    accepts(&api, &app).await;
    let port = json!({"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"});
    accepts(&api, &set(&app, "/spec/ports/0", port)).await;

    let node_port = "spec.ports[0].nodePort in body should be greater than or equal to 30000";
    refuses(&api, &set(&app, "/spec/ports/0/nodePort", json!(80)), node_port).await;
    let port = "spec.ports[0].port in body should be less than or equal to 65535";
    refuses(&api, &set(&app, "/spec/ports/0/port", json!(70000)), port).await;
    let protocol = r#"spec.ports[0].protocol: Unsupported value: "ICMP""#;
    refuses(&api, &set(&app, "/spec/ports/0/protocol", json!("ICMP")), protocol).await;
    refuses(&api, &without(&app, "/spec/image"), "spec.image: Required value").await;
    let size = "spec.size in body should be greater than or equal to 0";
    refuses(&api, &set(&app, "/spec/size", json!(-2)), size).await;
}

#[tokio::test]
async fn my_daemon_set() {
    let (_ns, api, daemons) = setup(
        "crd-mydaemonset",
        include_str!("../../deploy/crds/apps.zhongmingmao.io_mydaemonsets.yaml"),
        "mydaemonset.yaml",
    )
    .await;
    accepts(&api, &daemons).await;

    // The original operator's message, whichever way the image is missing.
    let required = "spec.image: Required value: image is required";
    refuses(&api, &without(&daemons, "/spec/image"), required).await;
    refuses(&api, &set(&daemons, "/spec/image", json!("")), required).await;
    refuses(&api, &without(&daemons, "/spec"), required).await;
}

#[tokio::test]
async fn prometheus_jmx_exporter() {
    let (_ns, api, exporter) = setup(
        "crd-jmx",
        include_str!("../../deploy/crds/banzaicloud.com_prometheusjmxexporters.yaml"),
        "prometheusjmxexporter.yaml",
    )
    .await;
    accepts(&api, &exporter).await;
    let port = "spec.port in body should be less than or equal to 65535";
    refuses(&api, &set(&exporter, "/spec/port", json!(70000)), port).await;
    let name = "spec.config.configMapName: Required value";
    refuses(&api, &without(&exporter, "/spec/config/configMapName"), name).await;
    refuses(
        &api,
        &without(&exporter, "/spec/labelSelector"),
        "spec.labelSelector: Required value",
    )
    .await;
}

#[tokio::test]
async fn prometheus() {
    let (_ns, api, prometheus) = setup(
        "crd-prometheus",
        include_str!("../../deploy/crds/monitoring.coreos.com_prometheuses.yaml"),
        "prometheus.yaml",
    )
    .await;
    accepts(&api, &prometheus).await;
    accepts(&api, &set(&prometheus, "/spec/enableAdminAPI", json!(true))).await;
    let replicas = "spec.replicas in body should be greater than or equal to 0";
    refuses(&api, &set(&prometheus, "/spec/replicas", json!(-1)), replicas).await;
    // The fields the plugin does not read are kept as prometheus-operator
    // users write them.
    let storage = json!({"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "40Gi"}}}}});
    accepts(
        &api,
        &set(
            &set(&prometheus, "/spec/retention", json!("15d")),
            "/spec/storage",
            storage,
        ),
    )
    .await;
    let interval = "spec.scrapeInterval in body should match";
    refuses(&api, &set(&prometheus, "/spec/scrapeInterval", json!("30")), interval).await;
    let has = json!({"matchExpressions": [{"key": "team", "operator": "Has"}]});
    let operator = "spec.ruleSelector.matchExpressions[0].operator: Unsupported value: \"Has\"";
    refuses(&api, &set(&prometheus, "/spec/ruleSelector", has), operator).await;
    let no_port = json!([{"namespace": "default", "name": "alertmanager-example"}]);
    let port = "spec.alerting.alertmanagers[0].port: Required value";
    refuses(&api, &set(&prometheus, "/spec/alerting/alertmanagers", no_port), port).await;
}

/// The kinds the prometheus plugin reads, whose CRDs are generated from its
/// types: what users write is kept, the fields the plugin needs are checked.
#[tokio::test]
async fn prometheus_operator_monitors_and_rules() {
    let ns = TestNamespace::create("crd-monitors").await;
    for crd in [
        include_str!("../../deploy/crds/monitoring.coreos.com_servicemonitors.yaml"),
        include_str!("../../deploy/crds/monitoring.coreos.com_podmonitors.yaml"),
        include_str!("../../deploy/crds/monitoring.coreos.com_prometheusrules.yaml"),
    ] {
        install_crd(&ns.client(), &crd_from_yaml(crd)).await;
    }
    let object = |kind: &str, spec: Value| json!({"apiVersion": "monitoring.coreos.com/v1", "kind": kind, "metadata": {"name": "web"}, "spec": spec});
    let services = dynamic_api(&ns, "monitoring.coreos.com", "v1", "ServiceMonitor");
    let service_monitor = object(
        "ServiceMonitor",
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "namespaceSelector": {"matchNames": ["shop"]},
            "endpoints": [{
                "port": "metrics", "interval": "15s", "scheme": "https",
                "tlsConfig": {"insecureSkipVerify": true},
                "relabelings": [{"action": "replace", "targetLabel": "team", "replacement": "shop"}],
            }],
        }),
    );
    accepts(&services, &service_monitor).await;
    refuses(
        &services,
        &without(&service_monitor, "/spec/selector"),
        "spec.selector: Required value",
    )
    .await;
    let ftp = "spec.endpoints[0].scheme: Unsupported value: \"ftp\"";
    refuses(
        &services,
        &set(&service_monitor, "/spec/endpoints/0/scheme", json!("ftp")),
        ftp,
    )
    .await;

    let pods = dynamic_api(&ns, "monitoring.coreos.com", "v1", "PodMonitor");
    let pod_monitor = object(
        "PodMonitor",
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "podMetricsEndpoints": [{"portNumber": 9100, "path": "/stats", "metricRelabelings": []}],
        }),
    );
    accepts(&pods, &pod_monitor).await;
    let port = "spec.podMetricsEndpoints[0].portNumber in body should be less than or equal to 65535";
    refuses(
        &pods,
        &set(&pod_monitor, "/spec/podMetricsEndpoints/0/portNumber", json!(70000)),
        port,
    )
    .await;

    let rules = dynamic_api(&ns, "monitoring.coreos.com", "v1", "PrometheusRule");
    let rule = object(
        "PrometheusRule",
        json!({"groups": [{"name": "web", "limit": 10, "rules": [
            {"alert": "WebDown", "expr": "up{job=\"web\"} == 0", "for": "5m", "keep_firing_for": "10m",
             "labels": {"severity": "page"}},
        ]}]}),
    );
    accepts(&rules, &rule).await;
    refuses(
        &rules,
        &without(&rule, "/spec/groups/0/rules/0/expr"),
        "spec.groups[0].rules[0].expr: Required value",
    )
    .await;
    refuses(
        &rules,
        &without(&rule, "/spec/groups/0/name"),
        "spec.groups[0].name: Required value",
    )
    .await;
    let for_ = "spec.groups[0].rules[0].for in body should match";
    refuses(
        &rules,
        &set(&rule, "/spec/groups/0/rules/0/for", json!("5 minutes")),
        for_,
    )
    .await;
}

/// The Website example's CRD, generated from its Python plugin's
/// dataclasses (`trellis-py crd`), on the real API server: the sample is
/// kept, the fields' defaults are filled in, and the bounds are enforced.
#[tokio::test]
async fn website_generated_from_the_plugins_types() {
    let ns = TestNamespace::create("crd-website").await;
    install_crd(
        &ns.client(),
        &crd_from_yaml(include_str!("../../examples/website/crd.yaml")),
    )
    .await;
    let sample: Value = serde_yaml::from_str(include_str!("../../examples/website/sample.yaml")).unwrap();
    let api = dynamic_api(&ns, "samples.trellis.dev", "v1alpha1", "Website");
    let sent: DynamicObject = serde_json::from_value(sample.clone()).unwrap();
    let created = api
        .create(&PostParams::default(), &sent)
        .await
        .expect("the sample is accepted");
    assert_eq!(
        created.data["spec"],
        json!({"image": "nginx:1.27", "host": "docs.example.com", "replicas": 2, "port": 8080, "path": "/"}),
        "the sample, with the defaults of the fields it leaves out"
    );
    api.delete("docs", &DeleteParams::default()).await.expect("deletes");

    let at_most = "spec.replicas in body should be less than or equal to 20";
    refuses(&api, &set(&sample, "/spec/replicas", json!(50)), at_most).await;
    refuses(&api, &without(&sample, "/spec/host"), "spec.host: Required value").await;
    refuses(
        &api,
        &set(&sample, "/spec/path", json!("docs")),
        "spec.path in body should match '^/'",
    )
    .await;
}

/// The CRD `trellis init` writes for each language (from the Python
/// dataclasses, from the Rust types by kube's derive; the TypeScript one is
/// the Python one) on the real API server: the scaffolded sample is kept,
/// a left-out `replicas` defaults to 1, and the bounds are enforced.
#[tokio::test]
async fn scaffolded_crds_in_each_language() {
    use trellis::scaffold::{Language, Project, plan};
    for (language, group) in [
        (Language::Python, "py.scaffold.test"),
        (Language::Typescript, "ts.scaffold.test"),
        (Language::Rust, "rs.scaffold.test"),
    ] {
        let files = plan(&Project {
            language,
            group: group.to_owned(),
            version: "v1alpha1".to_owned(),
            kind: "Greeting".to_owned(),
            sdk_root: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
        })
        .expect("the project plans");
        let file = |path: &str| &files.iter().find(|f| f.path == path).expect(path).text;
        let ns = TestNamespace::create("crd-scaffold").await;
        install_crd(&ns.client(), &crd_from_yaml(file("crd.yaml"))).await;
        let api = dynamic_api(&ns, group, "v1alpha1", "Greeting");
        let sample: Value = serde_yaml::from_str(file("sample.yaml")).unwrap();
        accepts(&api, &sample).await;
        let sent: DynamicObject = serde_json::from_value(without(&sample, "/spec/replicas")).unwrap();
        let created = api.create(&PostParams::default(), &sent).await.expect("accepted");
        assert_eq!(
            created.data["spec"],
            json!({"message": "hello", "replicas": 1}),
            "{language:?}: replicas defaults to 1"
        );
        api.delete("hello", &DeleteParams::default()).await.expect("deletes");
        let at_most = "spec.replicas in body should be less than or equal to 10";
        refuses(&api, &set(&sample, "/spec/replicas", json!(11)), at_most).await;
        refuses(&api, &without(&sample, "/spec/message"), "spec.message: Required value").await;
    }
}
