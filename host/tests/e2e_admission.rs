//! Admission through plugins, end to end on a real control plane: the host
//! serves validating and mutating webhooks from the same `.wasm` that
//! reconciles, with its own CA (rotated every 20 s here), one webhook
//! configuration per registration, scoped to a tenant's namespace, removed
//! with the registration. A 0.1.0 plugin keeps reconciling beside them.
//!
//! One test, in phases: the webhook configurations are cluster-wide, so
//! every phase shares the one host of this binary.

mod common;

use common::{HOSTILE_CRD, RECONCILER_PLUGIN_CRD, SETTLE, TestHost, add_plugin, dynamic_api, onboard_hostile};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use trellis::admission::AdmissionOptions;
use trellis::crd::ReconcilerPlugin;
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::{crd_from_yaml, install_crd, until};

const MYDAEMONSET_CRD: &str = include_str!("../../deploy/crds/apps.zhongmingmao.io_mydaemonsets.yaml");
const APPSERVICE_CRD: &str = include_str!("../../deploy/crds/app.example.com_appservices.yaml");
/// The 0.1.0 test plugin's parent kind.
const LEGACY_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: legacies.test.trellis.dev
spec:
  group: test.trellis.dev
  scope: Namespaced
  names: { plural: legacies, singular: legacy, kind: Legacy }
  versions:
  - name: v1
    served: true
    storage: true
    subresources: { status: {} }
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: { type: object, x-kubernetes-preserve-unknown-fields: true }
          status: { type: object, x-kubernetes-preserve-unknown-fields: true }
"#;
/// How long the CA lives here: it is replaced every 20 s.
const CA_VALIDITY: Duration = Duration::from_secs(30);

/// The MyDaemonSet CRD without its CEL rule: "image is required" can only
/// come from the plugin.
fn mydaemonset_crd_without_cel() -> Value {
    let mut crd: Value = serde_yaml::from_str(MYDAEMONSET_CRD).unwrap();
    let schema = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let removed = schema.as_object_mut().unwrap().remove("x-kubernetes-validations");
    assert!(removed.is_some(), "the shipped CRD has the CEL rule this test removes");
    crd
}

/// A port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mydaemonset(name: &str, image: Option<&str>) -> Value {
    let spec = image.map_or(json!({}), |image| json!({"image": image}));
    json!({"apiVersion": "apps.zhongmingmao.io/v1beta1", "kind": "MyDaemonSet", "metadata": {"name": name}, "spec": spec})
}

fn appservice(name: &str, node_port: u16) -> Value {
    json!({"apiVersion": "app.example.com/v1", "kind": "AppService", "metadata": {"name": name},
        "spec": {"size": 1, "image": "nginx:1.25", "ports": [{"port": 80, "nodePort": node_port}]}})
}

/// `kubectl apply --server-side` of `object`, as the user `admin`.
async fn apply(api: &Api<DynamicObject>, object: &Value) -> Result<DynamicObject, kube::Error> {
    let name = object["metadata"]["name"].as_str().unwrap();
    api.patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(object))
        .await
}

/// The message of the API's refusal.
fn refusal(result: Result<DynamicObject, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(e)) => e.message,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(o) => panic!(
            "expected a refusal, {} was admitted",
            o.metadata.name.unwrap_or_default()
        ),
    }
}

/// Applies `object` until the API refuses it (deleting it when admitted);
/// returns the refusal's message.
async fn until_refused(api: &Api<DynamicObject>, object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap();
    until(&format!("{name} to be refused"), SETTLE, || async {
        match apply(api, object).await {
            Err(kube::Error::Api(e)) => Ok(e.message),
            Err(e) => Err(e.to_string()),
            Ok(_) => {
                let _ = api.delete(name, &Default::default()).await;
                Err("admitted".into())
            }
        }
    })
    .await
}

/// Waits until `name`'s configurations of both kinds are `present` or not.
async fn webhook_configs_are(admin: &kube::Client, name: &str, validating: bool, mutating: bool) {
    let v: Api<ValidatingWebhookConfiguration> = Api::all(admin.clone());
    let m: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
    until(
        &format!("webhook configurations {name}: validating {validating}, mutating {mutating}"),
        SETTLE,
        || async {
            let got = (
                v.get_opt(name).await.map_err(|e| e.to_string())?.is_some(),
                m.get_opt(name).await.map_err(|e| e.to_string())?.is_some(),
            );
            if got == (validating, mutating) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn plugins_admit_default_and_refuse_through_the_hosts_webhooks() {
    let ns = TestNamespace::create("admission").await;
    let tenant = TestNamespace::create("admission-tenant").await;
    let other = TestNamespace::create("admission-other").await;
    let admin = ns.client();
    install_crd(&admin, &serde_json::from_value(mydaemonset_crd_without_cel()).unwrap()).await;
    for crd in [APPSERVICE_CRD, LEGACY_CRD, HOSTILE_CRD, RECONCILER_PLUGIN_CRD] {
        install_crd(&admin, &crd_from_yaml(crd)).await;
    }
    let plugins = tempfile::tempdir().unwrap();
    add_plugin(plugins.path(), "trellis-plugin-mydaemonset", "mydaemonset.wasm");
    add_plugin(plugins.path(), "trellis-plugin-appservice", "appservice.wasm");
    add_plugin(plugins.path(), "trellis-test-wit-v0-1", "legacy.wasm");
    let port = free_port();
    let mut admission = AdmissionOptions::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Some(format!("https://127.0.0.1:{port}")),
        ns.name(),
    )
    .unwrap();
    admission.ca_validity = CA_VALIDITY;
    admission.check_service_account_use = true;
    let config = ns.env().config();
    let host = TestHost::start_with_client(admin.clone(), plugins, |mut o| {
        o.client_config = Some(config);
        o.plugin_accounts = trellis::controller::PluginAccounts::HostClient;
        o.admission = Some(admission);
        o
    })
    .await;
    webhook_configs_are(&admin, "trellis-mydaemonset", true, true).await;
    webhook_configs_are(&admin, "trellis-appservice", true, false).await;

    // MyDaemonSet: refused by the plugin's validate, defaulted by its default.
    let daemons = dynamic_api(&ns, "apps.zhongmingmao.io", "v1beta1", "MyDaemonSet");
    // Until the API server has seen the configuration, it is admitted.
    let message = until_refused(&daemons, &mydaemonset("no-image", None)).await;
    assert!(message.contains("image is required"), "{message}");
    let stored = apply(&daemons, &mydaemonset("plain", Some("nginx")))
        .await
        .expect("admitted");
    assert_eq!(stored.data["spec"]["image"], "nginx:latest");
    let pinned = apply(&daemons, &mydaemonset("pinned", Some("nginx:1.25")))
        .await
        .expect("admitted");
    assert_eq!(pinned.data["spec"]["image"], "nginx:1.25");

    // AppService: a nodePort another AppService holds is refused, naming it.
    let apps = dynamic_api(&ns, "app.example.com", "v1", "AppService");
    apply(&apps, &appservice("web", 30080))
        .await
        .expect("the first is admitted");
    // Until the host's cache has seen `web`, `api` is admitted.
    let message = until_refused(&apps, &appservice("api", 30080)).await;
    assert!(
        message.contains(&format!(
            "nodePort 30080 is already used by AppService {}/web",
            ns.name()
        )),
        "{message}"
    );
    apply(&apps, &appservice("api", 30081))
        .await
        .expect("a free nodePort is admitted");

    // A 0.1.0 plugin reconciles, and gets no webhook.
    let legacies = dynamic_api(&ns, "test.trellis.dev", "v1", "Legacy");
    apply(
        &legacies,
        &json!({"apiVersion": "test.trellis.dev/v1", "kind": "Legacy", "metadata": {"name": "old"}, "spec": {}}),
    )
    .await
    .unwrap();
    let greeting = common::eventually_exists(&ns.api::<ConfigMap>(), "old-legacy").await;
    assert_eq!(greeting.data.unwrap()["greeting"], "hello from 0.1.0");
    webhook_configs_are(&admin, "trellis-legacy", false, false).await;

    // A tenant's plugin: its webhook sees its namespace only.
    onboard_hostile(&admin, &tenant, "hostile", json!({}), json!({"timeoutMs": 300})).await;
    let registration = format!("trellis-{}.hostile", tenant.name());
    webhook_configs_are(&admin, &registration, true, true).await;
    let tenant_hostiles = dynamic_api(&tenant, "test.trellis.dev", "v1", "Hostile");
    let other_hostiles = dynamic_api(&other, "test.trellis.dev", "v1", "Hostile");
    let message = refusal(apply(&tenant_hostiles, &common::hostile("refused", "validate-refuse")).await);
    assert!(message.contains("hostile refuses"), "{message}");
    let answered = |hook: &str| {
        let series = format!(
            "trellis_admission_seconds_count{{plugin=\"{}.hostile\",hook=\"{hook}\",verdict=\"allowed\"}}",
            tenant.name()
        );
        common::counter(&host.metrics, &series)
    };
    let before = (answered("mutate"), answered("validate"));
    apply(&other_hostiles, &common::hostile("elsewhere", "validate-refuse"))
        .await
        .expect("another namespace's object never reaches the tenant's webhook");
    // Not even for the host to wave through: the API server never called it.
    assert_eq!((answered("mutate"), answered("validate")), before);
    apply(&tenant_hostiles, &common::hostile("fine", "ok")).await.unwrap();
    assert_eq!(
        (answered("mutate"), answered("validate")),
        (before.0 + 1.0, before.1 + 1.0),
        "the tenant's own objects are answered"
    );
    let labelled = apply(&tenant_hostiles, &common::hostile("labelled", "default-label"))
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.labels.unwrap()["hostile.trellis.dev/defaulted"],
        "yes"
    );
    let message = refusal(apply(&tenant_hostiles, &common::hostile("tamper", "default-status")).await);
    assert!(message.contains("default changed status"), "{message}");

    // Who may name a ServiceAccount: jane may write registrations of the
    // tenant's namespace, but names its plugin's account only once she may
    // impersonate it.
    let jane_rules = |extra: Value| {
        let mut rules = vec![
            json!({"apiGroups": ["trellis.dev"], "resources": ["reconcilerplugins"], "verbs": ["get", "create", "patch"]}),
        ];
        if !extra.is_null() {
            rules.push(extra);
        }
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "jane", "namespace": tenant.name()}, "rules": rules})
    };
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "jane", "namespace": tenant.name()},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jane"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}]});
    common::apply_yaml_stream(&admin, &format!("{}\n---\n{binding}", jane_rules(Value::Null))).await;
    let jane: Api<DynamicObject> = Api::namespaced_with(
        ns.env().client_as("jane", &["system:authenticated"]),
        tenant.name(),
        &kube::api::ApiResource::erase::<ReconcilerPlugin>(&()),
    );
    let janes = json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ReconcilerPlugin", "metadata": {"name": "janes"},
        "spec": {"serviceAccountName": "hostile", "module": {"configMap": {"name": "hostile", "key": "module.wasm"}}}});
    let message = until("jane's registration to be refused", SETTLE, || async {
        match apply(&jane, &janes).await {
            Err(kube::Error::Api(e)) if e.message.contains("impersonate") => Ok(e.message),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        message.contains("jane may not impersonate ServiceAccount") && message.contains("/hostile"),
        "{message}"
    );
    let impersonate = json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"], "resourceNames": ["hostile"]});
    common::apply_yaml_stream(&admin, &jane_rules(impersonate).to_string()).await;
    until(
        "jane's registration to be admitted once she may impersonate",
        SETTLE,
        || async { apply(&jane, &janes).await.map(|_| ()).map_err(|e| e.to_string()) },
    )
    .await;
    Api::<ReconcilerPlugin>::namespaced(admin.clone(), tenant.name())
        .delete("janes", &Default::default())
        .await
        .unwrap();

    // A looping validate gets the failurePolicy answer (Fail) within the
    // deadline, and the API server answers others meanwhile.
    let looping = tokio::spawn({
        let api = tenant_hostiles.clone();
        async move {
            let started = Instant::now();
            let result = apply(&api, &common::hostile("looping", "validate-loop")).await;
            (started.elapsed(), result)
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let probe = Instant::now();
    ns.api::<ConfigMap>().list(&Default::default()).await.unwrap();
    let probe = probe.elapsed();
    let (took, result) = looping.await.unwrap();
    let message = refusal(result);
    assert!(message.contains("ran past its deadline"), "{message}");
    assert!(
        took < Duration::from_secs(5),
        "the looping validate was answered after {took:?}"
    );
    assert!(
        probe < Duration::from_secs(1),
        "the API server took {probe:?} to list meanwhile"
    );

    // CA rotation: admission keeps working through it, no request fails.
    let secrets = ns.api::<Secret>();
    let ca = |s: Secret| s.data.unwrap()["ca.crt"].0.clone();
    let first_ca = ca(secrets.get("trellis-webhook-ca").await.unwrap());
    let started = Instant::now();
    let (mut calls, mut failures) = (0, Vec::new());
    while started.elapsed() < CA_VALIDITY {
        let probe = mydaemonset(&format!("probe-{calls}"), Some("nginx"));
        let created = daemons
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &serde_json::from_value(probe).unwrap(),
            )
            .await;
        match created {
            Ok(o) if o.data["spec"]["image"] == "nginx:latest" => {}
            Ok(o) => failures.push(format!("not defaulted: {}", o.data["spec"])),
            Err(e) => failures.push(e.to_string()),
        }
        calls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rotated_ca = ca(secrets.get("trellis-webhook-ca").await.unwrap());
    assert_ne!(first_ca, rotated_ca, "the CA was not rotated in {CA_VALIDITY:?}");
    assert!(
        failures.is_empty(),
        "{} of {calls} requests failed during the rotation: {failures:?}",
        failures.len()
    );

    // Removing a registration removes its configurations.
    Api::<ReconcilerPlugin>::namespaced(admin.clone(), tenant.name())
        .delete("hostile", &Default::default())
        .await
        .unwrap();
    webhook_configs_are(&admin, &registration, false, false).await;
    std::fs::remove_file(host.plugins_dir.path().join("mydaemonset.wasm")).unwrap();
    webhook_configs_are(&admin, "trellis-mydaemonset", false, false).await;
    until(
        "a MyDaemonSet without image to be admitted once the plugin is gone",
        SETTLE,
        || async {
            apply(&daemons, &mydaemonset("after", None))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
    host.stop().await;
}
