//! The child objects of one micro-service instance.

use crate::spec::Checked;
use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use trellis_sdk::k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use trellis_sdk::k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceQuota, ResourceQuotaSpec, SeccompProfile, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use trellis_sdk::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use trellis_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use trellis_sdk::{Request, quantity};

/// Port the service listens on inside the container.
const APP_PORT: i32 = 8080;
/// Where the `config` text is mounted.
const CONFIG_DIR: &str = "/etc/msdeploy";
/// Label and annotation prefix a gateway reads.
const GATEWAY_PREFIX: &str = "custom.ops";

/// Names and labels shared by the children.
pub struct Names {
    /// The instance (`fullName`, else the parent's name): names the
    /// Deployment, Service and ServiceAccount.
    pub instance: String,
    /// The micro-service (`msName`, else the instance).
    pub service: String,
    labels: BTreeMap<String, String>,
}

impl Names {
    pub fn new(req: &Request, spec: &Checked) -> Self {
        let instance = spec.full_name.clone().unwrap_or_else(|| req.name().to_owned());
        let service = spec.ms_name.clone().unwrap_or_else(|| instance.clone());
        let mut labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), service.clone()),
            ("app.kubernetes.io/instance".to_owned(), instance.clone()),
            ("app.kubernetes.io/component".to_owned(), "micro-service".to_owned()),
        ]);
        if let Some(version) = spec.version.as_ref().filter(|v| is_label_value(v)) {
            labels.insert("app.kubernetes.io/version".to_owned(), version.clone());
        }
        Self {
            instance,
            service,
            labels,
        }
    }

    fn meta(&self, req: &Request, name: &str) -> ObjectMeta {
        ObjectMeta {
            labels: Some(self.labels.clone()),
            ..req.child_meta(name)
        }
    }

    fn selector(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .filter(|(k, _)| k.as_str() == "app.kubernetes.io/instance" || k.as_str() == "app.kubernetes.io/name")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn config_map(&self) -> String {
        format!("{}-config", self.instance)
    }
}

fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What a gateway reads: whether callers must authenticate, and the route.
fn gateway_annotations(names: &Names, spec: &Checked) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([(format!("{GATEWAY_PREFIX}/need-auth"), spec.need_auth.to_string())]);
    if let Some(path) = &spec.path {
        annotations.insert(
            format!("{GATEWAY_PREFIX}/route"),
            format!("/{}/{}", names.service, path.trim_matches('/')),
        );
    }
    annotations
}

pub fn service_account(req: &Request, names: &Names) -> ServiceAccount {
    ServiceAccount {
        metadata: names.meta(req, &names.instance),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

pub fn config_map(req: &Request, names: &Names, config: &str) -> ConfigMap {
    ConfigMap {
        metadata: names.meta(req, &names.config_map()),
        data: Some(BTreeMap::from([("config".to_owned(), config.to_owned())])),
        ..Default::default()
    }
}

pub fn deployment(req: &Request, names: &Names, spec: &Checked) -> Deployment {
    let mut pod_labels = names.labels.clone();
    pod_labels.insert(format!("{GATEWAY_PREFIX}/need-auth"), spec.need_auth.to_string());
    let mut pod_annotations = gateway_annotations(names, spec);
    if let Some(config) = &spec.config {
        // A new config rolls the pods, as a restart would pick it up.
        pod_annotations.insert(
            "trellis.dev/config-hash".to_owned(),
            format!("{:016x}", fnv1a(config.as_bytes())),
        );
    }
    let probe = |initial_delay| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let container = Container {
        name: names.service.clone(),
        image: Some(spec.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: APP_PORT,
            ..Default::default()
        }]),
        resources: spec.resources.clone(),
        readiness_probe: Some(probe(5)),
        liveness_probe: Some(probe(15)),
        volume_mounts: spec.config.as_ref().map(|_| {
            vec![VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let volumes = spec.config.as_ref().map(|_| {
        vec![Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    Deployment {
        metadata: names.meta(req, &names.instance),
        spec: Some(DeploymentSpec {
            // With an autoscaler the replica count is its to set; leaving
            // the field out keeps the two from fighting over it.
            replicas: if spec.autoscaling && !spec.idle {
                None
            } else {
                Some(spec.wanted_replicas())
            },
            selector: LabelSelector {
                match_labels: Some(names.selector()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names.instance.clone()),
                    containers: vec![container],
                    volumes,
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(req: &Request, names: &Names, spec: &Checked) -> Service {
    let mut metadata = names.meta(req, &names.instance);
    metadata.annotations = Some(gateway_annotations(names, spec));
    metadata
        .labels
        .get_or_insert_default()
        .insert(format!("{GATEWAY_PREFIX}/need-auth"), spec.need_auth.to_string());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names.selector()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A quota sized for the most pods the instance may run (the autoscaler's
/// maximum plus one surge pod); `None` without resource requirements.
pub fn resource_quota(req: &Request, names: &Names, spec: &Checked) -> Option<ResourceQuota> {
    let resources = spec.resources.as_ref()?;
    let pods = spec.max_replicas() + 1;
    let mut hard = BTreeMap::new();
    for (prefix, list) in [("requests", &resources.requests), ("limits", &resources.limits)] {
        for (resource, amount) in list.iter().flatten() {
            if let Some(total) = quantity::times(&amount.0, pods) {
                hard.insert(format!("{prefix}.{resource}"), Quantity(total));
            }
        }
    }
    hard.insert("pods".to_owned(), Quantity(pods.to_string()));
    Some(ResourceQuota {
        metadata: names.meta(req, &format!("{}-quota", names.instance)),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn autoscaler(req: &Request, names: &Names, spec: &Checked) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: names.meta(req, &names.instance),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: names.instance.clone(),
            },
            min_replicas: Some(spec.replicas.max(1)),
            max_replicas: spec.max_replicas().max(1),
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(80),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// FNV-1a: a stable, dependency-free fingerprint of the config text.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
