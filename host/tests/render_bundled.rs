//! Golden tests of `trellis render` for the bundled operator plugins
//! (etcd-cluster, redis, appservice, mydaemonset): the samples users already
//! write, the steps of a resize, and the errors of bad specs.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p trellis --test render_bundled`.

mod render_support;

use render_support::{assert_golden, input, one_line_error, render_plugin, sample};

const ETCD: &str = "trellis-plugin-etcd-cluster";
const REDIS: &str = "trellis-plugin-redis";
const APPSERVICE: &str = "trellis-plugin-appservice";
const MYDAEMONSET: &str = "trellis-plugin-mydaemonset";

#[test]
fn etcd_sample_bootstraps_every_member() {
    let output = render_plugin(ETCD, &sample("etcdcluster.yaml"), None, None);
    assert_golden("etcd-sample.yaml", output);
}

#[test]
fn etcd_grows_one_member_at_a_time() {
    let output = render_plugin(ETCD, &input("etcd-grow.yaml"), Some("etcd-observed-3-ready.yaml"), None);
    assert_golden("etcd-grow.yaml", output);
}

#[test]
fn etcd_removes_a_member_before_its_pod() {
    let first = render_plugin(
        ETCD,
        &input("etcd-shrink.yaml"),
        Some("etcd-observed-3-ready.yaml"),
        None,
    );
    assert_golden("etcd-shrink-remove-member.yaml", first);
    let then = render_plugin(
        ETCD,
        &input("etcd-shrink.yaml"),
        Some("etcd-observed-removal-done.yaml"),
        None,
    );
    assert_golden("etcd-shrink-scale-down.yaml", then);
}

#[test]
fn etcd_even_size_is_allowed_with_a_warning() {
    let output = render_plugin(ETCD, &input("etcd-size-4.yaml"), None, None);
    assert_golden("etcd-size-4.yaml", output);
}

#[test]
fn etcd_sizes_out_of_range_are_invalid_specs() {
    let stderr = one_line_error(&render_plugin(ETCD, &input("etcd-size-10.yaml"), None, None));
    assert!(stderr.contains("invalid spec: size 10 is above 9"), "{stderr}");
    let stderr = one_line_error(&render_plugin(ETCD, &input("etcd-size-0.yaml"), None, None));
    assert!(
        stderr.contains("invalid spec: size must be at least 1, not 0"),
        "{stderr}"
    );
}

#[test]
fn redis_sample_has_persistent_nodes_and_credentials() {
    let output = render_plugin(REDIS, &sample("redisenterprisecluster.yaml"), None, None);
    assert_golden("redis-sample.yaml", output);
}

#[test]
fn redis_without_persistence_has_no_claims_and_operator_defaults() {
    let output = render_plugin(REDIS, &input("redis-ephemeral.yaml"), None, None);
    assert_golden("redis-ephemeral.yaml", output);
}

#[test]
fn appservice_sample() {
    let output = render_plugin(APPSERVICE, &sample("appservice.yaml"), None, None);
    assert_golden("appservice-sample.yaml", output);
}

#[test]
fn appservice_node_port_out_of_range_is_an_invalid_spec() {
    let stderr = one_line_error(&render_plugin(
        APPSERVICE,
        &input("appservice-bad-node-port.yaml"),
        None,
        None,
    ));
    assert!(stderr.contains("nodePort 80 is outside 30000-32767"), "{stderr}");
}

#[test]
fn mydaemonset_runs_one_pod_per_node() {
    let output = render_plugin(
        MYDAEMONSET,
        &sample("mydaemonset.yaml"),
        Some("mydaemonset-observed-one-ready.yaml"),
        Some("nodes-two.yaml"),
    );
    assert_golden("mydaemonset-two-nodes.yaml", output);
}

#[test]
fn mydaemonset_without_image_says_image_is_required() {
    let stderr = one_line_error(&render_plugin(
        MYDAEMONSET,
        &input("mydaemonset-no-image.yaml"),
        None,
        None,
    ));
    assert!(stderr.contains("invalid spec: image is required"), "{stderr}");
}

const JMX_EXPORTER: &str = "trellis-plugin-jmx-exporter";

#[test]
fn jmx_exporter_decorates_the_running_pods_its_selector_picks() {
    let output = render_plugin(
        JMX_EXPORTER,
        &sample("prometheusjmxexporter.yaml"),
        None,
        Some("jmx-pods-and-config.yaml"),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_golden("jmx-exporter-sample.yaml", output);
    // The other app's pod is not even handed to the plugin (its related
    // answer); the pending one is, and is not scraped.
    assert_eq!(text.matches("# decorate v1 Pod").count(), 3, "{text}");
    assert!(!text.contains("web-0") && !text.contains("dummyapp-3"), "{text}");
}

#[test]
fn jmx_exporter_without_its_config_map_decorates_nothing() {
    let output = render_plugin(
        JMX_EXPORTER,
        &sample("prometheusjmxexporter.yaml"),
        None,
        Some("jmx-pods.yaml"),
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_golden("jmx-exporter-no-config.yaml", output);
    assert!(text.contains("reason: ConfigMapNotFound"), "{text}");
    assert!(!text.contains("# decorate"), "{text}");
}
