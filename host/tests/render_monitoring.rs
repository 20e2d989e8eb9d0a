//! Golden tests of `trellis render` for the prometheus plugin (the
//! Prometheus Operator's `Prometheus`): the sample users write with the
//! ServiceMonitors, PodMonitors and PrometheusRules its selectors pick or
//! leave, namespace selectors, the admin API; and the real `promtool`
//! checking every configuration and rule file the goldens hold.
//!
//! The config Secret holds `prometheus.yaml` in base64; the
//! `*.prometheus.yaml` goldens show it readable for two cases.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p trellis --test render_monitoring`.
//! promtool comes from `TRELLIS_PROMTOOL`, else `tests/go-tool path promtool`
//! (`make promtool` builds it).

mod render_support;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use render_support::{assert_golden, input, render_plugin, sample};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROMETHEUS: &str = "trellis-plugin-prometheus";

#[test]
fn prometheus_sample_selects_the_frontend_monitors_and_the_example_rules() {
    let output = render_plugin(
        PROMETHEUS,
        &sample("prometheus.yaml"),
        Some("prometheus-observed-two-available.yaml"),
        Some("prometheus-related-sample.yaml"),
    );
    assert_golden("prometheus-sample.yaml", output.clone());
    assert_config_golden("prometheus-sample.prometheus.yaml", &output);
    assert!(
        !golden("prometheus-sample.yaml").contains("--web.enable-admin-api"),
        "the sample has enableAdminAPI: false"
    );
}

#[test]
fn prometheus_without_matching_monitors_scrapes_nothing() {
    let output = render_plugin(
        PROMETHEUS,
        &sample("prometheus.yaml"),
        None,
        Some("prometheus-related-unmatched.yaml"),
    );
    assert_golden("prometheus-no-match.yaml", output);
}

#[test]
fn prometheus_namespace_selector_reaches_labelled_namespaces_only() {
    let output = render_plugin(
        PROMETHEUS,
        &input("prometheus-namespace-selector.yaml"),
        None,
        Some("prometheus-related-other-namespace.yaml"),
    );
    assert_golden("prometheus-other-namespace-selected.yaml", output.clone());
    assert_config_golden("prometheus-other-namespace-selected.prometheus.yaml", &output);
}

#[test]
fn prometheus_without_namespace_selector_stays_in_its_namespace() {
    let output = render_plugin(
        PROMETHEUS,
        &sample("prometheus.yaml"),
        None,
        Some("prometheus-related-other-namespace.yaml"),
    );
    assert_golden("prometheus-other-namespace-ignored.yaml", output);
}

#[test]
fn prometheus_rule_needs_both_labels_of_the_rule_selector() {
    let output = render_plugin(
        PROMETHEUS,
        &sample("prometheus.yaml"),
        None,
        Some("prometheus-related-rules.yaml"),
    );
    assert_golden("prometheus-rule-one-label-missing.yaml", output);
}

#[test]
fn prometheus_admin_api_is_enabled_only_when_asked() {
    let output = render_plugin(PROMETHEUS, &input("prometheus-admin-api.yaml"), None, None);
    assert_golden("prometheus-admin-api.yaml", output);
    assert!(golden("prometheus-admin-api.yaml").contains("- --web.enable-admin-api\n"));
}

#[test]
fn prometheus_skips_what_prometheus_would_refuse_with_a_warning() {
    let output = render_plugin(
        PROMETHEUS,
        &sample("prometheus.yaml"),
        None,
        Some("prometheus-related-invalid.yaml"),
    );
    assert_golden("prometheus-invalid-skipped.yaml", output);
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(golden_dir().join(name)).unwrap()
}

/// promtool: `TRELLIS_PROMTOOL`, else where `tests/go-tool build promtool` puts it.
fn promtool() -> PathBuf {
    let path = match std::env::var_os("TRELLIS_PROMTOOL") {
        Some(path) => PathBuf::from(path),
        None => trellis_testenv::assets::go_tool("promtool"),
    };
    assert!(
        path.is_file(),
        "promtool is missing at {}: build it with `make promtool` (tests/go-tool build promtool), or point TRELLIS_PROMTOOL at one",
        path.display()
    );
    path
}

/// The Prometheus configuration and rule files of one render output.
struct Generated {
    config: Vec<u8>,
    /// `(configmap, key, content)`.
    rule_files: Vec<(String, String, String)>,
}

/// Picks the config Secret and the rules ConfigMap out of the render
/// output `text` of `name`.
fn generated(name: &str, text: &str) -> Generated {
    let mut config = None;
    let mut rule_files = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let object = Value::deserialize(document).unwrap_or_else(|e| panic!("{name}: {e}"));
        let is_rules = object["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.contains("-rulefiles-"));
        match object["kind"].as_str() {
            Some("Secret") => {
                let secret: Secret = serde_json::from_value(object).unwrap();
                let mut data = secret.data.unwrap_or_default();
                let bytes = data
                    .remove("prometheus.yaml")
                    .unwrap_or_else(|| panic!("{name}: no prometheus.yaml"));
                config = Some(bytes.0);
            }
            Some("ConfigMap") if is_rules => {
                let map: ConfigMap = serde_json::from_value(object).unwrap();
                let map_name = map.metadata.name.unwrap();
                for (key, content) in map.data.unwrap_or_default() {
                    rule_files.push((map_name.clone(), key, content));
                }
            }
            _ => {}
        }
    }
    Generated {
        config: config.unwrap_or_else(|| panic!("{name} has no config Secret")),
        rule_files,
    }
}

/// The Secret holds the configuration in base64: `name` (a
/// `*.prometheus.yaml` golden) holds it readable.
fn assert_config_golden(name: &str, output: &Output) {
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    let actual = String::from_utf8(generated(name, &text).config).unwrap();
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    assert_eq!(
        actual,
        golden(name),
        "the generated prometheus.yaml differs from {}",
        path.display()
    );
}

/// One golden's configuration and rule files, written as the plugin mounts
/// them: `config/prometheus.yaml` and `rules/<configmap>/<file>`.
struct Mounted {
    golden: String,
    config: PathBuf,
    rule_files: Vec<PathBuf>,
}

/// Writes the configuration and rule files of `golden` under `dir`.
fn mount(golden: &Path, dir: &Path) -> Mounted {
    let name = golden.file_name().unwrap().to_string_lossy().into_owned();
    let generated = generated(&name, &std::fs::read_to_string(golden).unwrap());
    let root = dir.join(name.trim_end_matches(".yaml"));
    let config = root.join("config/prometheus.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, generated.config).unwrap();
    let mut rule_files = Vec::new();
    for (map, key, content) in generated.rule_files {
        let folder = root.join("rules").join(map);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(&key), content).unwrap();
        rule_files.push(folder.join(key));
    }
    Mounted {
        golden: name,
        config,
        rule_files,
    }
}

fn run(promtool: &Path, args: &[&str], files: &[PathBuf], what: &str) -> String {
    let out = Command::new(promtool)
        .args(args)
        .args(files)
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} refused {what}:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn promtool_accepts_every_generated_config_and_rule_file() {
    let promtool = promtool();
    let goldens: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("prometheus-") && !name.ends_with(".prometheus.yaml")
        })
        .collect();
    assert!(goldens.len() >= 6, "the prometheus goldens: {goldens:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut rules_checked = 0;
    for golden in &goldens {
        let mounted = mount(golden, dir.path());
        let what = format!("the configuration of {}", mounted.golden);
        let said = run(
            &promtool,
            &["check", "config"],
            std::slice::from_ref(&mounted.config),
            &what,
        );
        // The config's rule_files glob finds the mounted rules.
        if !mounted.rule_files.is_empty() {
            let found = format!("SUCCESS: {} rule files found", mounted.rule_files.len());
            assert!(said.contains(&found), "{what}: expected {found:?} in:\n{said}");
            let what = format!("the rule files of {}", mounted.golden);
            run(&promtool, &["check", "rules"], &mounted.rule_files, &what);
            rules_checked += mounted.rule_files.len();
        }
    }
    assert!(rules_checked >= 2, "the goldens hold rule files to check");
}

/// What the plugin skips with a warning (see prometheus-invalid-skipped),
/// promtool refuses: a scrape timeout longer than the interval, a rule
/// that neither records nor alerts.
#[test]
fn promtool_refuses_what_the_plugin_skips() {
    let promtool = promtool();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yaml");
    let slow = "scrape_configs:\n- job_name: slow\n  scrape_interval: 10s\n  scrape_timeout: 30s\n  static_configs:\n  - targets: [localhost:9090]\n";
    std::fs::write(&config, slow).unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "groups:\n- name: broken\n  rules:\n  - expr: up == 0\n").unwrap();
    for (args, file) in [(["check", "config"], config), (["check", "rules"], rules)] {
        let out = Command::new(&promtool).args(args).arg(&file).output().unwrap();
        assert!(
            !out.status.success(),
            "promtool {} accepted {}",
            args.join(" "),
            file.display()
        );
    }
}
