//! The objects of one Prometheus, named as prometheus-operator names them:
//! the StatefulSet `prometheus-<name>` (Prometheus and its config
//! reloader), the governing headless Service `prometheus-operated`, the
//! config Secret `prometheus-<name>`, the rules ConfigMap
//! `prometheus-<name>-rulefiles-0` and, with more than one replica, the
//! PodDisruptionBudget `prometheus-<name>`.

use crate::config::{self, CONFIG_DIR, CONFIG_KEY, RULES_DIR};
use crate::rules::RuleFile;
use crate::spec::Checked;
use std::collections::BTreeMap;
use trellis_sdk::Request;
use trellis_sdk::k8s_openapi::ByteString;
use trellis_sdk::k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use trellis_sdk::k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretVolumeSource, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use trellis_sdk::k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use trellis_sdk::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use trellis_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use trellis_sdk::workload::match_labels;

/// Prometheus's web port, named `web`.
pub const WEB_PORT: i32 = 9090;
/// The headless Service every Prometheus StatefulSet of a namespace is
/// governed by.
pub const GOVERNING_SERVICE: &str = "prometheus-operated";
/// The config reloader prometheus-operator runs beside Prometheus.
pub const RELOADER_IMAGE: &str = "quay.io/prometheus-operator/prometheus-config-reloader:v0.85.0";
/// The reloader's metrics port.
const RELOADER_PORT: i32 = 8080;
/// Where the TSDB lives.
const DATA_DIR: &str = "/prometheus";

/// Names and labels shared by the objects of one Prometheus.
pub struct Instance<'a> {
    req: &'a Request,
    spec: &'a Checked<'a>,
    labels: BTreeMap<String, String>,
}

impl<'a> Instance<'a> {
    pub fn new(req: &'a Request, spec: &'a Checked<'a>) -> Self {
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "prometheus".to_owned()),
            ("app.kubernetes.io/instance".to_owned(), req.name().to_owned()),
            ("prometheus".to_owned(), req.name().to_owned()),
        ]);
        Self { req, spec, labels }
    }

    /// `prometheus-<name>`: the StatefulSet, the config Secret and the
    /// PodDisruptionBudget.
    pub fn name(&self) -> String {
        format!("prometheus-{}", self.req.name())
    }

    /// The rules ConfigMap.
    pub fn rules_name(&self) -> String {
        format!("prometheus-{}-rulefiles-0", self.req.name())
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        self.req.child_meta_labeled(name, &self.labels)
    }

    /// Headless: stable DNS names for the pods, `<pod>.prometheus-operated`.
    pub fn governing_service(&self) -> Service {
        let labels = BTreeMap::from([("operated-prometheus".to_owned(), "true".to_owned())]);
        Service {
            metadata: self.req.child_meta_labeled(GOVERNING_SERVICE, &labels),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                selector: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_owned(),
                    "prometheus".to_owned(),
                )])),
                ports: Some(vec![ServicePort {
                    name: Some("web".into()),
                    port: WEB_PORT,
                    target_port: Some(IntOrString::String("web".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The configuration, under [`CONFIG_KEY`].
    pub fn config_secret(&self, config: &str) -> Secret {
        Secret {
            metadata: self.meta(&self.name()),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                CONFIG_KEY.to_owned(),
                ByteString(config.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    /// One key per selected PrometheusRule (none: an empty ConfigMap, so
    /// the volume still mounts).
    pub fn rules_config_map(&self, files: &[RuleFile]) -> ConfigMap {
        ConfigMap {
            metadata: self.meta(&self.rules_name()),
            data: Some(files.iter().map(|f| (f.key.clone(), f.content.clone())).collect()),
            ..Default::default()
        }
    }

    /// Keeps all but one replica up through voluntary disruptions; only
    /// for more than one replica (a budget over one pod would block every
    /// drain).
    pub fn disruption_budget(&self) -> Option<PodDisruptionBudget> {
        (self.spec.replicas > 1).then(|| PodDisruptionBudget {
            metadata: self.meta(&self.name()),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(match_labels(&self.labels)),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn prometheus_container(&self) -> Container {
        let mut args = vec![
            format!("--config.file={}", config::config_file()),
            format!("--storage.tsdb.path={DATA_DIR}"),
            "--web.enable-lifecycle".to_owned(),
            "--web.route-prefix=/".to_owned(),
        ];
        if self.spec.admin_api {
            args.push("--web.enable-admin-api".to_owned());
        }
        let probe = |path: &str, period: i32, failures: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.to_owned()),
                port: IntOrString::String("web".into()),
                scheme: Some("HTTP".into()),
                ..Default::default()
            }),
            period_seconds: Some(period),
            timeout_seconds: Some(3),
            failure_threshold: Some(failures),
            ..Default::default()
        };
        Container {
            name: "prometheus".into(),
            image: Some(self.spec.image.clone()),
            args: Some(args),
            ports: Some(vec![ContainerPort {
                name: Some("web".into()),
                container_port: WEB_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            readiness_probe: Some(probe("/-/ready", 5, 3)),
            liveness_probe: Some(probe("/-/healthy", 5, 6)),
            // Replaying a large WAL takes a while: up to 15 minutes before
            // the liveness probe may restart the pod.
            startup_probe: Some(probe("/-/ready", 15, 60)),
            resources: self.spec.resources.cloned(),
            volume_mounts: Some(vec![
                mount("config", CONFIG_DIR, true),
                mount("rules", &self.rules_dir(), true),
                mount("data", DATA_DIR, false),
            ]),
            ..Default::default()
        }
    }

    fn rules_dir(&self) -> String {
        format!("{RULES_DIR}/{}", self.rules_name())
    }

    /// Reloads Prometheus when the mounted config or rules change.
    fn reloader_container(&self) -> Container {
        let quantities = BTreeMap::from([
            ("cpu".to_owned(), Quantity("10m".into())),
            ("memory".to_owned(), Quantity("50Mi".into())),
        ]);
        Container {
            name: "config-reloader".into(),
            image: Some(RELOADER_IMAGE.into()),
            command: Some(vec!["/bin/prometheus-config-reloader".into()]),
            args: Some(vec![
                format!("--listen-address=:{RELOADER_PORT}"),
                format!("--reload-url=http://localhost:{WEB_PORT}/-/reload"),
                format!("--config-file={}", config::config_file()),
                format!("--watched-dir={}", self.rules_dir()),
            ]),
            ports: Some(vec![ContainerPort {
                name: Some("reloader-web".into()),
                container_port: RELOADER_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            resources: Some(ResourceRequirements {
                requests: Some(quantities.clone()),
                limits: Some(quantities),
                ..Default::default()
            }),
            volume_mounts: Some(vec![
                mount("config", CONFIG_DIR, true),
                mount("rules", &self.rules_dir(), true),
            ]),
            ..Default::default()
        }
    }

    pub fn stateful_set(&self) -> StatefulSet {
        let volumes = vec![
            Volume {
                name: "config".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(self.name()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "rules".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: self.rules_name(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ];
        StatefulSet {
            metadata: self.meta(&self.name()),
            spec: Some(StatefulSetSpec {
                replicas: Some(self.spec.replicas),
                service_name: Some(GOVERNING_SERVICE.to_owned()),
                // Replicas are independent: they start and stop together.
                pod_management_policy: Some("Parallel".into()),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    ..Default::default()
                }),
                selector: match_labels(&self.labels),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels.clone()),
                        annotations: Some(BTreeMap::from([(
                            "kubectl.kubernetes.io/default-container".to_owned(),
                            "prometheus".to_owned(),
                        )])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        // Used, never created: its RBAC is the user's.
                        service_account_name: self.spec.service_account.map(str::to_owned),
                        security_context: Some(PodSecurityContext {
                            run_as_user: Some(1000),
                            run_as_group: Some(2000),
                            run_as_non_root: Some(true),
                            fs_group: Some(2000),
                            ..Default::default()
                        }),
                        // Time to flush the head block on shutdown.
                        termination_grace_period_seconds: Some(600),
                        containers: vec![self.prometheus_container(), self.reloader_container()],
                        volumes: Some(volumes),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}
