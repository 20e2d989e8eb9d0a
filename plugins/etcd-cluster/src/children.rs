//! The objects of one etcd cluster: a headless peer Service (stable member
//! names), a client Service, the member StatefulSet, a ConfigMap with the
//! size the members bootstrap with, a PodDisruptionBudget keeping quorum,
//! and the Job that removes a member before its pod goes.

use crate::spec::Checked;
use std::collections::BTreeMap;
use trellis_sdk::Request;
use trellis_sdk::k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use trellis_sdk::k8s_openapi::api::batch::v1::{Job, JobSpec};
use trellis_sdk::k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, Service,
    ServiceSpec, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use trellis_sdk::k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use trellis_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use trellis_sdk::workload::{headless_service, match_labels, tcp_port};

const CLIENT_PORT: i32 = 2379;
const PEER_PORT: i32 = 2380;
const START_SCRIPT: &str = include_str!("scripts/start.sh");
const REMOVE_MEMBER_SCRIPT: &str = include_str!("scripts/remove-member.sh");

/// Names and labels shared by the objects of one cluster.
pub struct Cluster<'a> {
    req: &'a Request,
    spec: &'a Checked,
    labels: BTreeMap<String, String>,
}

impl<'a> Cluster<'a> {
    pub fn new(req: &'a Request, spec: &'a Checked) -> Self {
        Self {
            req,
            spec,
            labels: req.app_labels("etcd", "member"),
        }
    }

    /// The cluster's name: names the StatefulSet and the peer Service.
    pub fn name(&self) -> &str {
        self.req.name()
    }

    /// The Service clients use.
    pub fn client_service_name(&self) -> String {
        format!("{}-client", self.name())
    }

    fn config_name(&self) -> String {
        format!("{}-config", self.name())
    }

    /// The Job removing member `ordinal`.
    pub fn removal_job_name(&self, ordinal: i32) -> String {
        format!("{}-remove-member-{ordinal}", self.name())
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        self.req.child_meta_labeled(name, &self.labels)
    }

    /// Environment shared by the members and the removal Job.
    fn env(&self) -> Vec<EnvVar> {
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = |name: &str, value: String| EnvVar {
            name: name.to_owned(),
            value: Some(value),
            ..Default::default()
        };
        vec![
            EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(field("metadata.name")),
                ..Default::default()
            },
            EnvVar {
                name: "NAMESPACE".into(),
                value_from: Some(field("metadata.namespace")),
                ..Default::default()
            },
            value("CLUSTER", self.name().to_owned()),
            value("PEER_SERVICE", self.name().to_owned()),
            value("CLIENT_SERVICE", self.client_service_name()),
        ]
    }

    /// Headless: gives every member a stable DNS name, ready or not (the
    /// members must find each other to become ready).
    pub fn peer_service(&self) -> Service {
        headless_service(
            self.meta(self.name()),
            &self.labels,
            vec![tcp_port("client", CLIENT_PORT), tcp_port("peer", PEER_PORT)],
        )
    }

    pub fn client_service(&self) -> Service {
        Service {
            metadata: self.meta(&self.client_service_name()),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(self.labels.clone()),
                ports: Some(vec![tcp_port("client", CLIENT_PORT)]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The size new members bootstrap with, mounted as a file so a resize
    /// does not restart every member.
    pub fn config(&self) -> ConfigMap {
        ConfigMap {
            metadata: self.meta(&self.config_name()),
            data: Some(BTreeMap::from([("size".to_owned(), self.spec.size.to_string())])),
            ..Default::default()
        }
    }

    /// Keeps a quorum through voluntary disruptions (drains, evictions).
    pub fn disruption_budget(&self) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: self.meta(self.name()),
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(self.spec.quorum())),
                selector: Some(match_labels(&self.labels)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn stateful_set(&self, replicas: i32) -> StatefulSet {
        let container = Container {
            name: "etcd".into(),
            image: Some(self.spec.image()),
            command: Some(vec!["/bin/sh".into(), "-ec".into(), START_SCRIPT.into()]),
            env: Some(self.env()),
            ports: Some(vec![
                ContainerPort {
                    name: Some("client".into()),
                    container_port: CLIENT_PORT,
                    ..Default::default()
                },
                ContainerPort {
                    name: Some("peer".into()),
                    container_port: PEER_PORT,
                    ..Default::default()
                },
            ]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/health".into()),
                    port: IntOrString::Int(CLIENT_PORT),
                    ..Default::default()
                }),
                initial_delay_seconds: Some(5),
                period_seconds: Some(5),
                ..Default::default()
            }),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/var/run/etcd".into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "config".into(),
                    mount_path: "/etc/etcd-cluster".into(),
                    read_only: Some(true),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let spread = PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(match_labels(&self.labels)),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        };
        StatefulSet {
            metadata: self.meta(self.name()),
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some(self.name().to_owned()),
                // Bootstrap members start together; growth and shrinkage are
                // paced by the plugin, one member per step.
                pod_management_policy: Some("Parallel".into()),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    ..Default::default()
                }),
                selector: match_labels(&self.labels),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels.clone()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        affinity: Some(Affinity {
                            pod_anti_affinity: Some(spread),
                            ..Default::default()
                        }),
                        volumes: Some(vec![
                            Volume {
                                name: "data".into(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Default::default()
                            },
                            Volume {
                                name: "config".into(),
                                config_map: Some(ConfigMapVolumeSource {
                                    name: self.config_name(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Removes member `ordinal` from the cluster (run before its pod goes).
    pub fn removal_job(&self, ordinal: i32) -> Job {
        let mut env = self.env();
        env.push(EnvVar {
            name: "MEMBER".into(),
            value: Some(format!("{}-{ordinal}", self.name())),
            ..Default::default()
        });
        let mut labels = self.labels.clone();
        labels.insert("app.kubernetes.io/component".into(), "member-removal".into());
        Job {
            metadata: self.req.child_meta_labeled(&self.removal_job_name(ordinal), &labels),
            spec: Some(JobSpec {
                backoff_limit: Some(6),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("OnFailure".into()),
                        containers: vec![Container {
                            name: "remove-member".into(),
                            image: Some(self.spec.image()),
                            command: Some(vec!["/bin/sh".into(), "-ec".into(), REMOVE_MEMBER_SCRIPT.into()]),
                            env: Some(env),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
