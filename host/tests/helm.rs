//! The Helm chart (deploy/helm/trellis), with a real helm (`tests/go-tool
//! build helm`) and a real kubectl and control plane:
//!
//! - `helm lint --strict` passes with the chart's values and with the
//!   strictest ones (ci/strict-values.yaml); a wrong value is refused by the
//!   schema, naming it;
//! - with its defaults the chart renders the objects `kubectl kustomize
//!   deploy/` renders, but for Helm's own labels (and the Namespace, which
//!   Helm leaves to `--create-namespace`);
//! - everything it renders, CRDs included, is accepted by the API server
//!   (`kubectl apply --dry-run=server`), with either values;
//! - `helm install` on a control plane with kwok makes the host's
//!   Deployment available in a namespace enforcing the restricted Pod
//!   Security Standard, and the installed RBAC grants the host and its
//!   plugins what they need and no more (`kubectl auth can-i --as`); an
//!   upgrade disabling a bundled plugin takes its identity away, and one
//!   turning tenants off narrows impersonation to the plugins' accounts.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use trellis_testenv::assets::go_tool;
use trellis_testenv::{Assets, TestEnv, TestNamespace, shared_env_with_kwok};

/// Labels Helm adds that deploy/ does not have.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/trellis")
}

fn strict_values() -> PathBuf {
    chart().join("ci/strict-values.yaml")
}

fn kubectl() -> PathBuf {
    Assets::from_env().unwrap().kubectl().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command, returning its output; `env` gets the control plane's
/// kubeconfig when given.
fn run(program: &PathBuf, args: &[&str], env: Option<&TestEnv>, stdin: Option<&str>) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(env) = env {
        command.env("KUBECONFIG", env.kubeconfig_path());
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    if let Some(input) = stdin {
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Like [`run`], failing the test unless it succeeds; its stdout.
fn run_ok(program: &PathBuf, args: &[&str], env: Option<&TestEnv>, stdin: Option<&str>) -> String {
    let out = run(program, args, env, stdin);
    assert!(
        out.status.success(),
        "{} {} failed:\n{}\n{}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `helm template` of the chart into `namespace`, with extra arguments.
fn helm_template(namespace: &str, extra: &[&str]) -> String {
    let chart = chart().display().to_string();
    let mut args = vec!["template", "trellis", chart.as_str(), "--namespace", namespace];
    args.extend_from_slice(extra);
    run_ok(&go_tool("helm"), &args, None, None)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Objects by kind, name and namespace, without the CRDs and the Namespace,
/// and without Helm's own labels.
fn comparable(yaml: &str) -> BTreeMap<String, Value> {
    documents(yaml)
        .into_iter()
        .filter(|o| !matches!(o["kind"].as_str(), Some("CustomResourceDefinition" | "Namespace")))
        .map(|mut object| {
            if let Some(labels) = object["metadata"]["labels"].as_object_mut() {
                for label in HELM_LABELS {
                    labels.remove(label);
                }
            }
            let key = format!(
                "{} {}/{}",
                object["kind"].as_str().unwrap(),
                object["metadata"]["namespace"].as_str().unwrap_or(""),
                object["metadata"]["name"].as_str().unwrap()
            );
            (key, object)
        })
        .collect()
}

fn crd_names(yaml: &str) -> Vec<String> {
    let mut names: Vec<String> = documents(yaml)
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_chart_lints_with_its_own_and_the_strictest_values() {
    let helm = go_tool("helm");
    let chart = chart().display().to_string();
    run_ok(&helm, &["lint", "--strict", &chart], None, None);
    let strict = strict_values().display().to_string();
    run_ok(&helm, &["lint", "--strict", &chart, "--values", &strict], None, None);

    // The schema refuses a wrong value before anything renders.
    let refused = run(
        &helm,
        &["template", "trellis", &chart, "--set", "tenants.maxMemoryMiB=lots"],
        None,
        None,
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("tenants/maxMemoryMiB"), "{stderr}");
    let unknown = run(
        &helm,
        &["template", "trellis", &chart, "--set", "replica=3"],
        None,
        None,
    );
    assert!(!unknown.status.success(), "an unknown value passed");
}

#[test]
fn with_its_defaults_the_chart_renders_what_kustomize_renders() {
    let kustomized = run_ok(
        &kubectl(),
        &["kustomize", &repo().join("deploy").display().to_string()],
        None,
        None,
    );
    let charted = helm_template("trellis-system", &["--include-crds"]);
    assert_eq!(crd_names(&charted), crd_names(&kustomized));
    let (charted, kustomized) = (comparable(&charted), comparable(&kustomized));
    assert_eq!(
        charted.keys().collect::<Vec<_>>(),
        kustomized.keys().collect::<Vec<_>>(),
        "the chart and deploy/ render different objects"
    );
    for (key, object) in &charted {
        assert_eq!(
            object, &kustomized[key],
            "{key} differs between the chart (left) and deploy/ (right)"
        );
    }
    assert!(charted.len() > 30, "only {} objects", charted.len());
}

#[tokio::test]
async fn the_api_server_accepts_every_object_the_chart_renders() {
    let env = shared_env_with_kwok();
    let ns = TestNamespace::create_in(env, "helm-dry").await;
    // The CRDs for real, so that the objects of their kinds (the
    // ServiceMonitor) can be checked too.
    let crds = helm_template(ns.name(), &["--include-crds"]);
    let crds: Vec<_> = documents(&crds)
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| serde_yaml::to_string(&o).unwrap())
        .collect();
    run_ok(
        &kubectl(),
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(env),
        Some(&crds.join("---\n")),
    );
    run_ok(
        &kubectl(),
        &["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        Some(env),
        None,
    );
    let strict = strict_values().display().to_string();
    for extra in [vec![], vec!["--values", strict.as_str()]] {
        let rendered = helm_template(ns.name(), &extra);
        let applied = run_ok(
            &kubectl(),
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "--field-manager=helm-test",
                "-f",
                "-",
            ],
            Some(env),
            Some(&rendered),
        );
        let objects = documents(&rendered).len();
        assert_eq!(
            applied.lines().filter(|l| l.contains("serverside-applied")).count(),
            objects,
            "not every object was accepted ({extra:?}):\n{applied}"
        );
    }
}

fn can_i(env: &TestEnv, who: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let as_user = format!("--as={who}");
    all.push(&as_user);
    let out = run(&kubectl(), &all, Some(env), None);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl {}: {answer} {}",
        all.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    answer == "yes"
}

async fn eventually_available(api: &Api<Deployment>, replicas: i32) {
    for _ in 0..240 {
        if let Ok(deployment) = api.get("trellis").await {
            let status = deployment.status.unwrap_or_default();
            if status.available_replicas == Some(replicas) && status.updated_replicas == Some(replicas) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "the trellis Deployment did not become available: {:?}",
        api.get("trellis").await
    );
}

#[tokio::test]
async fn helm_install_brings_the_host_up_with_exactly_its_rights() {
    let env = shared_env_with_kwok();
    let admin = env.client();
    // A namespace of its own, enforcing the restricted Pod Security Standard
    // as deploy/'s trellis-system does: the host's pods must be admitted.
    let name = format!("helm-install-{}", std::process::id());
    let mut namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
    }))
    .unwrap();
    namespace = Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let ns = namespace.metadata.name.unwrap();
    let helm = go_tool("helm");
    let chart = chart().display().to_string();
    run_ok(
        &helm,
        &[
            "install",
            "trellis",
            &chart,
            "--namespace",
            &ns,
            "--wait",
            "--timeout",
            "3m",
        ],
        Some(env),
        None,
    );
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    eventually_available(&deployments, 2).await;

    let host = format!("system:serviceaccount:{ns}:trellis");
    let msdeploy = format!("system:serviceaccount:{ns}:trellis-plugin-msdeploy");
    let ns_flag = format!("--namespace={ns}");
    // The host: registrations, module ConfigMaps, its Lease, the webhooks'
    // CA and configurations, and acting as its plugins.
    for (verb_and_resource, namespaced) in [
        (&["list", "clusterreconcilerplugins.trellis.dev"][..], false),
        (
            &["patch", "reconcilerplugins.trellis.dev", "--subresource=status"][..],
            false,
        ),
        (&["watch", "configmaps"][..], false),
        (&["create", "events.events.k8s.io"][..], false),
        (&["update", "leases.coordination.k8s.io"][..], true),
        // With --shards: each round lists the shard and member Leases, and
        // a replica leaving deletes its heartbeat.
        (&["list", "leases.coordination.k8s.io"][..], true),
        (&["delete", "leases.coordination.k8s.io/trellis-member-x"][..], true),
        (&["impersonate", "serviceaccounts/trellis-plugin-msdeploy"][..], true),
        (&["impersonate", "serviceaccounts/trellis-plugin-redis"][..], true),
        (&["create", "validatingwebhookconfigurations"][..], false),
        (&["update", "secrets/trellis-webhook-ca"][..], true),
    ] {
        let mut args = verb_and_resource.to_vec();
        if namespaced {
            args.push(&ns_flag);
        }
        assert!(can_i(env, &host, &args), "the host may not {args:?}");
    }
    // ... and nothing its plugins do, nor anything to grant itself more.
    for args in [
        &["list", "secrets", "--all-namespaces"][..],
        &["get", "secrets/trellis-webhook-ca-other", "--namespace=default"][..],
        &["create", "deployments.apps", "--namespace=default"][..],
        &["list", "microservicedeploys.custom.ops", "--all-namespaces"][..],
        &["create", "clusterrolebindings"][..],
        &["update", "leases.coordination.k8s.io", "--namespace=default"][..],
        &["list", "leases.coordination.k8s.io", "--namespace=default"][..],
    ] {
        assert!(!can_i(env, &host, args), "the host may {args:?}");
    }
    // A plugin: its parent kind and children, nothing else.
    assert!(can_i(
        env,
        &msdeploy,
        &["create", "deployments.apps", "--namespace=default"]
    ));
    assert!(can_i(
        env,
        &msdeploy,
        &["patch", "microservicedeploys.custom.ops", "--subresource=status"]
    ));
    assert!(!can_i(env, &msdeploy, &["get", "secrets", "--namespace=default"]));
    assert!(!can_i(
        env,
        &msdeploy,
        &["create", "statefulsets.apps", "--namespace=default"]
    ));

    // With tenants' accounts on (the default), the host may act as any
    // ServiceAccount a registration names.
    assert!(can_i(
        env,
        &host,
        &["impersonate", "serviceaccounts/default", "--namespace=default"]
    ));

    // Disabling a bundled plugin takes its identity away and tells the host
    // to leave its module alone; without tenants, the host may act as the
    // enabled plugins' accounts only.
    run_ok(
        &helm,
        &[
            "upgrade",
            "trellis",
            &chart,
            "--namespace",
            &ns,
            "--set",
            "plugins.redis.enabled=false",
            "--set",
            "tenants.enabled=false",
            "--wait",
            "--timeout",
            "3m",
        ],
        Some(env),
        None,
    );
    assert!(!can_i(
        env,
        &host,
        &["impersonate", "serviceaccounts/trellis-plugin-redis", &ns_flag]
    ));
    assert!(!can_i(
        env,
        &host,
        &["impersonate", "serviceaccounts/default", "--namespace=default"]
    ));
    assert!(can_i(
        env,
        &host,
        &["impersonate", "serviceaccounts/trellis-plugin-msdeploy", &ns_flag]
    ));
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    assert!(accounts.get_opt("trellis-plugin-redis").await.unwrap().is_none());
    assert!(accounts.get_opt("trellis-plugin-msdeploy").await.unwrap().is_some());
    let args = deployments
        .get("trellis")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--disable-plugin=redis".to_owned()), "{args:?}");
    eventually_available(&deployments, 2).await;
}
