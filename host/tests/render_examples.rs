//! The Website example plugin, written in Rust, Python and TypeScript
//! (`examples/website/`), rendered on the same inputs: the three give the
//! same output byte for byte, which is also the golden file, and refuse a
//! bad spec with the same message.
//!
//! The Python and TypeScript modules are built by `make examples` into
//! `target/examples/`. Regenerate the golden files with
//! `UPDATE_GOLDEN=1 cargo test -p trellis --test render_examples`.

mod render_support;

use render_support::{assert_golden, one_line_error, render, repo};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The example's module in each language.
fn modules() -> Vec<(&'static str, PathBuf)> {
    let built = |name: &str| {
        let path = repo().join("target/examples").join(name);
        assert!(
            path.exists(),
            "{} is missing: run `make examples` first",
            path.display()
        );
        path
    };
    vec![
        ("rust", trellis::testing::guest_module("trellis-example-website")),
        ("python", built("website-python.wasm")),
        ("typescript", built("website-typescript.wasm")),
    ]
}

fn example(name: &str) -> String {
    repo().join("examples/website").join(name).display().to_string()
}

fn render_with(module: &Path, parent: &str, observed: Option<&str>) -> Output {
    let (module, parent) = (module.display().to_string(), example(parent));
    let observed = observed.map(example);
    let mut args = vec!["--plugin", &module, "--parent", &parent];
    if let Some(observed) = &observed {
        args.extend(["--observed", observed.as_str()]);
    }
    render(&args)
}

/// Renders with every language's module, checks each against `golden`.
fn all_render(parent: &str, observed: Option<&str>, golden: &str) {
    for (language, module) in modules() {
        eprintln!("{language}: {}", module.display());
        assert_golden(golden, render_with(&module, parent, observed));
    }
}

#[test]
fn a_new_website_gets_its_three_children_in_every_language() {
    all_render("sample.yaml", None, "website-sample.yaml");
}

#[test]
fn a_website_is_ready_once_its_deployment_is_available_in_every_language() {
    all_render("sample.yaml", Some("observed-ready.yaml"), "website-ready.yaml");
}

#[test]
fn a_website_progresses_while_pods_start_in_every_language() {
    all_render(
        "sample.yaml",
        Some("observed-progressing.yaml"),
        "website-progressing.yaml",
    );
}

#[test]
fn bad_specs_are_refused_with_the_same_message_in_every_language() {
    for (parent, message) in [
        (
            "invalid-replicas.yaml",
            "invalid spec: spec.replicas must be an integer from 0 to 20",
        ),
        ("missing-host.yaml", "invalid spec: spec.host is required"),
    ] {
        for (language, module) in modules() {
            let stderr = one_line_error(&render_with(&module, parent, None));
            assert!(stderr.contains(message), "{language}, {parent}: {stderr}");
        }
    }
}

fn trellis_test(module: &Path, dir: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args([
            "test",
            &dir.display().to_string(),
            "--plugin",
            &module.display().to_string(),
        ])
        .output()
        .expect("running trellis test")
}

#[test]
fn every_language_passes_the_examples_scenarios() {
    let dir = repo().join("examples/website/tests");
    for (language, module) in modules() {
        let output = trellis_test(&module, &dir);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{language}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("5 scenarios: 5 passed, 0 failed"),
            "{language}: {stdout}"
        );
    }
}

#[test]
fn trellis_test_names_the_field_of_a_changed_child() {
    // A copy of the scenarios, one expecting 3 replicas where the plugin
    // renders the sample's 2.
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("tests");
    std::fs::create_dir(&tests).unwrap();
    for name in ["sample.yaml", "observed-ready.yaml"] {
        std::fs::copy(repo().join("examples/website").join(name), dir.path().join(name)).unwrap();
    }
    let scenario = std::fs::read_to_string(repo().join("examples/website/tests/new-website.yaml")).unwrap();
    assert!(scenario.contains("        replicas: 2\n"));
    std::fs::write(
        tests.join("new-website.yaml"),
        scenario.replacen("        replicas: 2\n", "        replicas: 3\n", 1),
    )
    .unwrap();
    std::fs::copy(
        repo().join("examples/website/tests/ready.yaml"),
        tests.join("ready.yaml"),
    )
    .unwrap();

    let output = trellis_test(&modules()[0].1, &tests);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("children[apps/v1 Deployment docs].spec.replicas: expected 3, got 2"),
        "{stdout}"
    );
    assert!(stdout.contains("2 scenarios: 1 passed, 1 failed"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: 1 of 2 scenarios failed"), "{stderr}");
}

#[test]
fn the_python_and_typescript_sdks_ship_the_hosts_wit() {
    let host = std::fs::read_to_string(repo().join("wit/v0.2/reconciler.wit")).unwrap();
    for copy in [
        "sdk-python/src/trellis_sdk/wit/reconciler.wit",
        "sdk-js/wit/reconciler.wit",
    ] {
        let shipped = std::fs::read_to_string(repo().join(copy)).unwrap();
        assert!(
            shipped == host,
            "{copy} differs from wit/v0.2/reconciler.wit: copy it again"
        );
    }
}

/// The interpreter SDKs' related selections and decorations, through a
/// built component (tests/sdk-labeler): the PodLabeler in Python and in
/// TypeScript passes the same scenarios, so the selector reaches the host
/// (only the matching Pods are handed over) and each decoration, a removed
/// label with it, comes back.
#[test]
fn related_selections_and_decorations_cross_in_python_and_typescript() {
    let dir = repo().join("tests/sdk-labeler/scenarios");
    for language in ["python", "typescript"] {
        let module = repo().join(format!("target/examples/labeler-{language}.wasm"));
        assert!(
            module.exists(),
            "{} is missing: run `make examples` first",
            module.display()
        );
        let output = trellis_test(&module, &dir);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{language}:\n{stdout}");
        assert!(stdout.contains("2 scenarios: 2 passed"), "{language}:\n{stdout}");
    }
}
