//! Injecting the JMX exporter's Java agent into a new pod (the
//! `default-related` hook): the first exporter of the pod's namespace, by
//! name, whose `labelSelector` matches the pod and which names an
//! `agentImage` gives an init container copying the agent jar into an
//! `emptyDir`, its ConfigMap as a volume, and `-javaagent:...` appended to
//! `JAVA_TOOL_OPTIONS` of every container. A pod injected already, or
//! matched by no such exporter, is left as it is.

use crate::{DEFAULT_PORT, JmxExporter};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use trellis_sdk::labels;
use trellis_sdk::prelude::Deserialize;

/// The init container (and the marker of an injected pod).
pub const INIT_CONTAINER: &str = "jmx-agent";
/// The annotation naming the exporter whose agent a pod got.
pub const INJECTED_BY: &str = "banzaicloud.com/prometheus-jmx-exporter-agent";
/// Where the jar is in the agent image unless `spec.agentJar` says.
const DEFAULT_AGENT_JAR: &str = "/jmx_prometheus_javaagent.jar";
const AGENT_DIR: &str = "/jmx-agent";
const CONFIG_DIR: &str = "/etc/jmx-exporter";

/// Adds the agent of the exporter among `parents` that matches `pod`, if any.
pub fn agent(pod: &mut Value, parents: &[Value]) {
    let labels: BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default();
    let mut candidates: Vec<(String, JmxExporter)> = parents
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| {
            let name = p["metadata"]["name"].as_str()?.to_owned();
            Some((name, JmxExporter::deserialize(p).ok()?))
        })
        .filter(|(_, e)| e.spec.checked().is_ok() && e.spec.agent_image.as_deref().is_some_and(|i| !i.is_empty()))
        .filter(|(_, e)| labels::matches(&e.spec.selector(), &labels))
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    let Some((name, exporter)) = candidates.into_iter().next() else {
        return;
    };
    let spec = &pod["spec"];
    let injected = spec["initContainers"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["name"] == INIT_CONTAINER));
    if injected || !spec["containers"].is_array() {
        return;
    }
    let spec = exporter.spec;
    let jar = format!("{AGENT_DIR}/jmx_prometheus_javaagent.jar");
    let option = format!(
        "-javaagent:{jar}={}:{CONFIG_DIR}/{}",
        spec.port.unwrap_or(DEFAULT_PORT),
        spec.config.config_map_key
    );
    let agent_mount = json!({"name": INIT_CONTAINER, "mountPath": AGENT_DIR});
    push(
        &mut pod["spec"]["initContainers"],
        json!({
            "name": INIT_CONTAINER,
            "image": spec.agent_image,
            "command": ["cp", spec.agent_jar.as_deref().unwrap_or(DEFAULT_AGENT_JAR), jar],
            "volumeMounts": [agent_mount],
        }),
    );
    push(
        &mut pod["spec"]["volumes"],
        json!({"name": INIT_CONTAINER, "emptyDir": {}}),
    );
    push(
        &mut pod["spec"]["volumes"],
        json!({"name": "jmx-exporter-config", "configMap": {"name": spec.config.config_map_name}}),
    );
    if let Some(containers) = pod["spec"]["containers"].as_array_mut() {
        for container in containers {
            push(
                &mut container["volumeMounts"],
                json!({"name": INIT_CONTAINER, "mountPath": AGENT_DIR, "readOnly": true}),
            );
            push(
                &mut container["volumeMounts"],
                json!({"name": "jmx-exporter-config", "mountPath": CONFIG_DIR, "readOnly": true}),
            );
            java_tool_options(container, &option);
        }
    }
    pod["metadata"]["annotations"][INJECTED_BY] = json!(name);
}

/// Appends `item` to the array at `at` (made when missing).
fn push(at: &mut Value, item: Value) {
    if !at.is_array() {
        *at = json!([]);
    }
    if let Some(items) = at.as_array_mut() {
        items.push(item);
    }
}

/// Appends `option` to the container's `JAVA_TOOL_OPTIONS` (set when
/// missing); one taken from elsewhere (`valueFrom`) is left alone.
fn java_tool_options(container: &mut Value, option: &str) {
    if !container["env"].is_array() {
        container["env"] = json!([]);
    }
    let Some(env) = container["env"].as_array_mut() else {
        return;
    };
    match env.iter_mut().find(|e| e["name"] == "JAVA_TOOL_OPTIONS") {
        Some(existing) if existing.get("valueFrom").is_some() => {}
        Some(existing) => {
            let value = existing["value"].as_str().unwrap_or_default();
            existing["value"] = json!(format!("{value} {option}").trim().to_owned());
        }
        None => env.push(json!({"name": "JAVA_TOOL_OPTIONS", "value": option})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter(name: &str, app: &str, image: Option<&str>) -> Value {
        json!({
            "apiVersion": "banzaicloud.com/v1alpha1", "kind": "PrometheusJmxExporter",
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {
                "labelSelector": {"app": app},
                "config": {"configMapName": "jmx-config", "configMapKey": "config.yaml"},
                "port": 9400, "agentImage": image
            }
        })
    }

    fn pod(app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": "apps", "labels": {"app": app}},
        "spec": {"containers": [
            {"name": "main", "image": "app:1", "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xmx1g"}]},
            {"name": "side", "image": "side:1"}
        ]}})
    }

    #[test]
    fn a_matching_pod_gets_the_agent_of_the_first_exporter_with_an_image() {
        let mut injected = pod("web");
        let parents = [
            exporter("a-no-image", "web", None),
            exporter("b", "web", Some("example.com/jmx-agent:1")),
            exporter("c", "web", Some("example.com/other:1")),
        ];
        agent(&mut injected, &parents);
        let spec = &injected["spec"];
        assert_eq!(spec["initContainers"][0]["name"], INIT_CONTAINER);
        assert_eq!(spec["initContainers"][0]["image"], "example.com/jmx-agent:1");
        assert_eq!(injected["metadata"]["annotations"][INJECTED_BY], "b");
        let option = "-javaagent:/jmx-agent/jmx_prometheus_javaagent.jar=9400:/etc/jmx-exporter/config.yaml";
        assert_eq!(spec["containers"][0]["env"][0]["value"], format!("-Xmx1g {option}"));
        assert_eq!(spec["containers"][1]["env"][0]["value"], option);
        assert_eq!(spec["volumes"][1]["configMap"]["name"], "jmx-config");
        assert_eq!(spec["containers"][1]["volumeMounts"].as_array().unwrap().len(), 2);

        let again = injected.clone();
        agent(&mut injected, &parents);
        assert_eq!(injected, again, "a pod injected already is left alone");
    }

    #[test]
    fn other_pods_and_exporters_without_an_image_change_nothing() {
        for (labels, parents) in [
            ("db", vec![exporter("b", "web", Some("example.com/jmx-agent:1"))]),
            ("web", vec![exporter("a", "web", None)]),
            ("web", vec![]),
        ] {
            let mut untouched = pod(labels);
            agent(&mut untouched, &parents);
            assert_eq!(untouched, pod(labels), "{labels}");
        }
    }
}
