//! Running `trellis render` from tests and comparing with golden files.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p trellis --test render --test render_bundled`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn sample(name: &str) -> PathBuf {
    let path = repo().join("deploy/samples").join(name);
    assert!(
        path.exists(),
        "sample {} is missing (deploy/samples/ holds the samples)",
        path.display()
    );
    path
}

pub fn input(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs").join(name)
}

pub fn render(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("render")
        .args(args)
        .output()
        .expect("running trellis")
}

/// Timestamps and generated passwords change from run to run; the golden
/// files hold fixed ones.
pub fn normalise(yaml: &str) -> String {
    yaml.lines()
        .map(|line| {
            for (key, fixed) in [("lastTransitionTime: ", "<now>"), ("password: ", "<generated>")] {
                if let Some(at) = line.find(key) {
                    return format!("{}{key}{fixed}", &line[..at]);
                }
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

pub fn assert_golden(name: &str, output: Output) {
    assert!(
        output.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let actual = normalise(&String::from_utf8(output.stdout).unwrap());
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
    assert_eq!(actual, expected, "render output differs from {}", golden.display());
}

pub fn one_line_error(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "exit code");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

/// Renders `parent` (with optional observed children and related objects,
/// files in `tests/inputs`) through the plugin crate `plugin`.
pub fn render_plugin(plugin: &str, parent: &Path, observed: Option<&str>, related: Option<&str>) -> Output {
    let module = trellis::testing::guest_module(plugin).display().to_string();
    let parent = parent.display().to_string();
    let mut args = vec!["--plugin".to_owned(), module, "--parent".to_owned(), parent];
    for (flag, file) in [("--observed", observed), ("--related", related)] {
        if let Some(file) = file {
            args.push(flag.to_owned());
            args.push(input(file).display().to_string());
        }
    }
    render(&args.iter().map(String::as_str).collect::<Vec<_>>())
}
