//! The README's worked tenant example, run as written: its `sh` block (the
//! namespace, ServiceAccount, Role and RoleBinding by `kubectl apply`, then
//! `trellis plugin pack ... | kubectl apply --server-side -f -`) goes through
//! bash with a real `kubectl` against the test control plane, beside a host
//! running as its deployed ServiceAccount. The greeter module (over 256 KiB,
//! as every bundled plugin is) must be served and reconcile a Greeter; the
//! same pack piped into a client-side `kubectl apply` is refused, which is
//! why the README says `--server-side`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use serde_json::json;
use trellis::crd::ReconcilerPlugin;
use trellis_testenv::assets::Assets;
use trellis_testenv::wait::{crd_from_yaml, install_crd};
use trellis_testenv::{TestEnv, shared_env};

/// The README's namespace of the worked example.
const TEAM: &str = "team-a";
/// Kubernetes' cap on all of an object's annotations together.
const ANNOTATIONS_CAP: usize = 256 << 10;

/// The README's `sh` block that contains `needle`, as written.
fn readme_block(needle: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("no ```sh block of the README contains {needle:?}"))
        .to_owned()
}

/// Runs `script` with bash (`-euo pipefail`) in `dir`, with `trellis` and
/// `kubectl` first on the PATH and the control plane's admin kubeconfig.
fn run_sh(env: &TestEnv, dir: &Path, script: &str) -> Output {
    let kubectl = Assets::from_env().unwrap().kubectl().unwrap_or_else(|e| panic!("{e}"));
    let trellis = PathBuf::from(env!("CARGO_BIN_EXE_trellis"));
    let path = format!(
        "{}:{}:{}",
        trellis.parent().unwrap().display(),
        kubectl.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("KUBECONFIG", env.kubeconfig_path())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_readme_tenant_example_runs_as_written() {
    let env = shared_env();
    let admin = env.client();
    // The platform team's part: the CRDs, the host's RBAC, the Greeter CRD
    // and the host, as its ServiceAccount.
    apply_deploy(&admin).await;
    install_crd(&admin, &crd_from_yaml(GREETER_CRD)).await;
    let host_config = env.service_account_config("trellis-system", "trellis").await;
    let host_client = kube::Client::try_from(host_config.clone()).unwrap();
    let host = TestHost::start_with_client(host_client, tempfile::tempdir().unwrap(), |mut o| {
        o.client_config = Some(host_config);
        o
    })
    .await;

    // The team's part: the README's block, in a folder holding greeter.wasm.
    let work = tempfile::tempdir().unwrap();
    let module = trellis::testing::guest_module("trellis-test-greeter-v1");
    std::fs::copy(&module, work.path().join("greeter.wasm")).unwrap();
    let block = readme_block("trellis plugin pack greeter.wasm");
    let out = run_sh(env, work.path(), &block);
    assert!(
        out.status.success(),
        "the README's block failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let registrations: Api<ReconcilerPlugin> = Api::namespaced(admin.clone(), TEAM);
    registration_ready_is(&registrations, "greeter", "True", "Serving").await;
    let config_map = Api::<ConfigMap>::namespaced(admin.clone(), TEAM)
        .get("greeter")
        .await
        .unwrap();
    // What was applied, not the file, must outgrow the cap for this test to show anything.
    let packed: usize = config_map.binary_data.iter().flatten().map(|(_, v)| v.0.len()).sum();
    assert!(
        packed * 4 / 3 > ANNOTATIONS_CAP,
        "the packed module ({packed} bytes) must outgrow the annotations cap in base64"
    );
    let annotations = config_map.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"),
        "the module was copied into an annotation"
    );
    let greeters = kube::Api::namespaced_with(
        admin.clone(),
        TEAM,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("test.trellis.dev", "v1", "Greeter")),
    );
    apply_as_user(
        &greeters,
        &json!({"apiVersion": "test.trellis.dev/v1", "kind": "Greeter", "metadata": {"name": "hello"}}),
    )
    .await;
    eventually_exists(&Api::<ConfigMap>::namespaced(admin.clone(), TEAM), "hello-greeting").await;

    // The pack line again: applying it once more is a no-op that succeeds.
    let pack_line = block
        .lines()
        .find(|line| line.starts_with("trellis plugin pack"))
        .unwrap();
    let again = run_sh(env, work.path(), pack_line);
    assert!(again.status.success(), "re-applying failed: {}", text(&again.stderr));

    // Client-side apply of the same output is refused by the API server:
    // the module does not fit the last-applied annotation.
    let client_side = pack_line
        .replace("--name greeter", "--name greeter-client-side")
        .replace("kubectl apply --server-side -f -", "kubectl apply -f -");
    assert_ne!(
        client_side,
        pack_line.replace("--name greeter", "--name greeter-client-side")
    );
    let refused = run_sh(env, work.path(), &client_side);
    let stderr = text(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("Too long"),
        "client-side apply was expected to be refused for the annotation's size: {stderr}"
    );
    assert!(
        Api::<ConfigMap>::namespaced(admin.clone(), TEAM)
            .get_opt("greeter-client-side")
            .await
            .unwrap()
            .is_none()
    );

    // kubectl applies the stream's documents one by one: the registration
    // after the refused ConfigMap went in, and points at nothing.
    let _ = registrations.delete("greeter-client-side", &Default::default()).await;

    host.stop().await;
    let _ = Api::<Namespace>::all(admin).delete(TEAM, &Default::default()).await;
}
