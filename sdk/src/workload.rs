//! Small builders for the pieces most workload plugins emit: label
//! selectors, TCP service ports, headless Services for StatefulSets.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// A selector matching exactly `labels`.
pub fn match_labels(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        ..Default::default()
    }
}

/// A TCP port `name` that forwards `port` to the same container port.
pub fn tcp_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// A headless Service over the pods with `labels`: stable DNS names for a
/// StatefulSet's pods, published before they are ready (members must find
/// each other to become ready).
pub fn headless_service(metadata: ObjectMeta, labels: &BTreeMap<String, String>, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels.clone()),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}
