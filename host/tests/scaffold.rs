//! `trellis init` in each language: the scaffolded project builds and its
//! scenarios pass with no edit (`make test`, which builds the module with
//! the language's toolchain and runs `trellis test`); the Python and Rust
//! projects' CRD is what `make crd` generates from their types, and their
//! `make test` catches a stale one; a bad name writes nothing.
//!
//! The Python and TypeScript toolchains come from PyPI and npm, the Rust
//! one from crates.io, as for the examples (`make examples`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

fn trellis() -> &'static str {
    env!("CARGO_BIN_EXE_trellis")
}

fn init(lang: &str, kind: &str, dir: &Path) -> Output {
    Command::new(trellis())
        .args([
            "init",
            "--lang",
            lang,
            "--group",
            "demo.example.com",
            "--version",
            "v1alpha1",
        ])
        .args(["--kind", kind, &dir.display().to_string()])
        .output()
        .expect("running trellis init")
}

fn make(dir: &Path, target: &str) -> Output {
    Command::new("make")
        .arg("-C")
        .arg(dir)
        .arg(target)
        .arg(format!("TRELLIS={}", trellis()))
        .output()
        .expect("running make")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Scaffolds `lang` into a fresh folder and runs its `make test`.
fn scaffold_builds_and_passes(lang: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("greeting");
    let started = Instant::now();
    let output = init(lang, "Greeting", &dir);
    assert!(output.status.success(), "trellis init: {}", text(&output));
    let output = make(&dir, "test");
    let log = text(&output);
    assert!(output.status.success(), "{lang}: make test failed:\n{log}");
    assert!(log.contains("2 scenarios: 2 passed, 0 failed"), "{lang}:\n{log}");
    eprintln!("{lang}: scaffold to green in {:.1} s", started.elapsed().as_secs_f64());
    work
}

/// The scaffolded crd.yaml is what `make crd` generates from the plugin's
/// types, and `make test` fails once the two drift apart.
fn crd_comes_from_the_types(dir: &Path) {
    let scaffolded = std::fs::read_to_string(dir.join("crd.yaml")).unwrap();
    std::fs::write(dir.join("crd.yaml"), scaffolded.replace("maximum: 10", "maximum: 12")).unwrap();
    let output = make(dir, "test");
    assert!(!output.status.success(), "make test passes with a stale crd.yaml");
    assert!(text(&output).contains("crd.yaml"), "{}", text(&output));
    let output = make(dir, "crd");
    assert!(output.status.success(), "make crd: {}", text(&output));
    let generated = std::fs::read_to_string(dir.join("crd.yaml")).unwrap();
    assert_eq!(
        generated, scaffolded,
        "the scaffolded CRD is not what `make crd` generates"
    );
}

#[test]
fn a_python_project_builds_and_passes_and_its_crd_comes_from_its_types() {
    let work = scaffold_builds_and_passes("python");
    crd_comes_from_the_types(&work.path().join("greeting"));
}

#[test]
fn a_typescript_project_builds_and_passes() {
    scaffold_builds_and_passes("typescript");
}

#[test]
fn a_rust_project_builds_and_passes_and_its_crd_comes_from_its_types() {
    let work = scaffold_builds_and_passes("rust");
    crd_comes_from_the_types(&work.path().join("greeting"));
}

#[test]
fn a_bad_kind_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("x");
    let output = init("python", "greeting", &dir);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("\"greeting\" is not a kind"),
        "{}",
        text(&output)
    );
    assert!(!dir.exists(), "nothing is written");
}
