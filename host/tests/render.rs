//! Golden tests of `trellis render`: the bundled plugins on the samples users
//! already write, edge cases, and the one-line errors of bad input.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p trellis --test render`;
//! the other bundled plugins are in `render_bundled.rs`.

mod render_support;

use render_support::{assert_golden, input, one_line_error, render, sample};
use trellis::testing::guest_module;

fn msdeploy() -> String {
    guest_module("trellis-plugin-msdeploy").display().to_string()
}

#[test]
fn msdeploy_sample() {
    let sample = sample("microservicedeploy.yaml");
    assert_golden(
        "msdeploy-sample.yaml",
        render(&["--plugin", &msdeploy(), "--parent", sample.to_str().unwrap()]),
    );
}

#[test]
fn msdeploy_quota_only_in_a_namespace_dedicated_to_the_instance() {
    let sample = sample("microservicedeploy.yaml");
    let render_in = |namespace: &str| {
        let related = input(namespace);
        render(&[
            "--plugin",
            &msdeploy(),
            "--parent",
            sample.to_str().unwrap(),
            "--related",
            related.to_str().unwrap(),
        ])
    };
    assert_golden("msdeploy-dedicated.yaml", render_in("namespace-dedicated.yaml"));
    assert_golden("msdeploy-shared.yaml", render_in("namespace-shared.yaml"));
}

#[test]
fn msdeploy_idle_scales_to_zero_without_autoscaler() {
    let parent = input("msdeploy-idle.yaml");
    let observed = input("msdeploy-idle-observed.yaml");
    let output = render(&[
        "--plugin",
        &msdeploy(),
        "--parent",
        parent.to_str().unwrap(),
        "--observed",
        observed.to_str().unwrap(),
    ]);
    assert_golden("msdeploy-idle.yaml", output);
}

#[test]
fn msdeploy_status_reflects_the_observed_deployment() {
    let sample = sample("microservicedeploy.yaml");
    let observed = input("msdeploy-observed-ready.yaml");
    let output = render(&[
        "--plugin",
        &msdeploy(),
        "--parent",
        sample.to_str().unwrap(),
        "--observed",
        observed.to_str().unwrap(),
    ]);
    assert_golden("msdeploy-ready.yaml", output);
}

#[test]
fn msdeploy_without_image_is_an_invalid_spec() {
    let parent = input("msdeploy-no-image.yaml");
    let stderr = one_line_error(&render(&[
        "--plugin",
        &msdeploy(),
        "--parent",
        parent.to_str().unwrap(),
    ]));
    assert!(stderr.contains("invalid spec: spec.image is required"), "{stderr}");
}

#[test]
fn a_missing_file_is_one_line() {
    let stderr = one_line_error(&render(&[
        "--plugin",
        &msdeploy(),
        "--parent",
        "/nonexistent/parent.yaml",
    ]));
    assert!(stderr.contains("cannot read /nonexistent/parent.yaml"), "{stderr}");
}

#[test]
fn invalid_yaml_is_one_line() {
    let parent = input("invalid.yaml");
    let stderr = one_line_error(&render(&[
        "--plugin",
        &msdeploy(),
        "--parent",
        parent.to_str().unwrap(),
    ]));
    assert!(stderr.contains("is not valid YAML"), "{stderr}");
}

#[test]
fn a_parent_of_the_wrong_kind_is_one_line() {
    let parent = sample("etcdcluster.yaml");
    let stderr = one_line_error(&render(&[
        "--plugin",
        &msdeploy(),
        "--parent",
        parent.to_str().unwrap(),
    ]));
    assert!(stderr.contains("the parent is a etcd.database.coreos.com/v1beta2 EtcdCluster, but plugin msdeploy reconciles custom.ops/v1 MicroServiceDeploy"), "{stderr}");
}

#[test]
fn a_plugin_that_traps_is_one_line() {
    let hostile = guest_module("trellis-test-hostile");
    let parent = input("hostile-panic.yaml");
    let stderr = one_line_error(&render(&[
        "--plugin",
        hostile.to_str().unwrap(),
        "--parent",
        parent.to_str().unwrap(),
    ]));
    assert!(
        stderr.contains("reconcile trapped") && stderr.contains("panics on purpose"),
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_not_a_plugin_is_one_line() {
    let not_a_plugin = input("invalid.yaml");
    let parent = sample("microservicedeploy.yaml");
    let stderr = one_line_error(&render(&[
        "--plugin",
        not_a_plugin.to_str().unwrap(),
        "--parent",
        parent.to_str().unwrap(),
    ]));
    assert!(stderr.contains("is not a valid WebAssembly component"), "{stderr}");
}

#[test]
fn admission_prints_the_verdict_and_the_patch_of_the_defaults() {
    let mydaemonset = guest_module("trellis-plugin-mydaemonset").display().to_string();
    let sample = sample("mydaemonset.yaml");
    let no_image = input("mydaemonset-no-image.yaml");
    let text = |args: &[&str]| {
        let output = render(args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let create = text(&[
        "--plugin",
        &mydaemonset,
        "--parent",
        no_image.to_str().unwrap(),
        "--admission",
        "create",
    ]);
    assert!(
        create.contains("allowed: false") && create.contains("- image is required"),
        "{create}"
    );
    let update = text(&[
        "--plugin",
        &mydaemonset,
        "--parent",
        sample.to_str().unwrap(),
        "--admission",
        "update",
        "--old",
        sample.to_str().unwrap(),
    ]);
    assert!(
        update.contains("allowed: true") && update.contains("operation: UPDATE"),
        "{update}"
    );
    assert!(
        update.contains("patch: []"),
        "a tagged image needs no default: {update}"
    );
    let error = one_line_error(&render(&[
        "--plugin",
        &mydaemonset,
        "--parent",
        no_image.to_str().unwrap(),
        "--admission",
        "update",
    ]));
    assert!(error.contains("--admission update needs --old"), "{error}");
}

/// `trellis test` scenarios of admission (`admission: create|update`): the
/// verdict is compared as a subset, and a wrong expectation names the field.
#[test]
fn admission_scenarios_check_the_verdict() {
    let mydaemonset = guest_module("trellis-plugin-mydaemonset");
    let dir = tempfile::tempdir().unwrap();
    let (sample, no_image) = (sample("mydaemonset.yaml"), input("mydaemonset-no-image.yaml"));
    let scenario = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
    scenario(
        "a-create-without-image.yaml",
        format!(
            "parent: {}\nadmission: create\nexpect:\n  admission: {{allowed: false, messages: [image is required]}}\n",
            no_image.display()
        ),
    );
    scenario(
        "an-update.yaml",
        format!(
            "parent: {0}\nadmission: update\nold: {0}\nexpect:\n  admission: {{operation: UPDATE, allowed: true, patch: []}}\n",
            sample.display()
        ),
    );
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["test", &dir.path().display().to_string(), "--plugin"])
            .arg(&mydaemonset)
            .output()
            .expect("running trellis test");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = run();
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("2 scenarios: 2 passed"), "{stdout}");

    scenario(
        "wrongly-allowed.yaml",
        format!(
            "parent: {}\nadmission: create\nexpect:\n  admission: {{allowed: true}}\n",
            no_image.display()
        ),
    );
    let (code, stdout, _) = run();
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("admission.allowed: expected true, got false"),
        "{stdout}"
    );

    scenario(
        "wrongly-allowed.yaml",
        format!("parent: {}\nadmission: update\nexpect: {{}}\n", no_image.display()),
    );
    let (_, _, stderr) = run();
    assert!(stderr.contains("`admission: update` needs `old`"), "{stderr}");

    scenario(
        "wrongly-allowed.yaml",
        format!(
            "parent: {0}\nadmission: create\nold: {0}\nexpect: {{}}\n",
            sample.display()
        ),
    );
    let (_, _, stderr) = run();
    assert!(stderr.contains("`old` is only for `admission: update`"), "{stderr}");
}
