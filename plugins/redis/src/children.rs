//! The objects of one Redis Enterprise cluster: the admin credentials
//! Secret (created once), a headless Service naming the nodes, the node
//! StatefulSet, the UI Service and a PodDisruptionBudget.

use crate::spec::Checked;
use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::ByteString;
use trellis_sdk::k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use trellis_sdk::k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Secret, SecretKeySelector, Service, ServiceSpec, VolumeMount, VolumeResourceRequirements,
};
use trellis_sdk::k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use trellis_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use trellis_sdk::workload::{headless_service, match_labels, tcp_port};
use trellis_sdk::{Error, Request, random};

/// The UI and REST API port of a node.
const UI_PORT: i32 = 8443;
const API_PORT: i32 = 9443;
const PERSIST_DIR: &str = "/var/opt/redislabs/persist";
const PASSWORD_LENGTH: usize = 24;

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
            labels: req.app_labels("redis-enterprise", "node"),
        }
    }

    /// The cluster's name: names the StatefulSet, the headless Service and
    /// the credentials Secret (as the Redis Enterprise operator does).
    pub fn name(&self) -> &str {
        self.req.name()
    }

    pub fn ui_service_name(&self) -> String {
        format!("{}-ui", self.name())
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        self.req.child_meta_labeled(name, &self.labels)
    }

    /// The admin credentials. A new password every call: the host creates
    /// the Secret once (`child_once`) and never replaces it.
    pub fn credentials(&self) -> Result<Secret, Error> {
        let password = random::password(PASSWORD_LENGTH)?;
        Ok(Secret {
            metadata: self.meta(self.name()),
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                (
                    "username".to_owned(),
                    ByteString(self.spec.username.clone().into_bytes()),
                ),
                ("password".to_owned(), ByteString(password.into_bytes())),
            ])),
            ..Default::default()
        })
    }

    /// Headless: stable DNS names for the nodes.
    pub fn nodes_service(&self) -> Service {
        headless_service(self.meta(self.name()), &self.labels, vec![tcp_port("api", API_PORT)])
    }

    pub fn ui_service(&self) -> Service {
        Service {
            metadata: self.meta(&self.ui_service_name()),
            spec: Some(ServiceSpec {
                type_: Some(self.spec.ui_service_type.clone()),
                selector: Some(self.labels.clone()),
                ports: Some(vec![tcp_port("ui", UI_PORT)]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// One node at a time may be disrupted.
    pub fn disruption_budget(&self) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: self.meta(self.name()),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(match_labels(&self.labels)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn stateful_set(&self) -> StatefulSet {
        let secret = |key: &str| EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: self.name().to_owned(),
                key: key.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = ["username", "password"]
            .into_iter()
            .map(|key| EnvVar {
                name: format!("ADMIN_{}", key.to_uppercase()),
                value_from: Some(secret(key)),
                ..Default::default()
            })
            .collect();
        let container = Container {
            name: "redis-enterprise-node".into(),
            image: Some(self.spec.image.clone()),
            image_pull_policy: Some(self.spec.pull_policy.clone()),
            resources: Some(self.spec.resources.clone()),
            env: Some(env),
            ports: Some(vec![
                ContainerPort {
                    name: Some("ui".into()),
                    container_port: UI_PORT,
                    ..Default::default()
                },
                ContainerPort {
                    name: Some("api".into()),
                    container_port: API_PORT,
                    ..Default::default()
                },
            ]),
            volume_mounts: self.spec.storage.as_ref().map(|_| {
                vec![VolumeMount {
                    name: "persistence".into(),
                    mount_path: PERSIST_DIR.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let claims = self.spec.storage.as_ref().map(|storage| {
            vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("persistence".into()),
                    labels: Some(self.labels.clone()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage.class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_owned(), storage.size.clone())])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        });
        StatefulSet {
            metadata: self.meta(self.name()),
            spec: Some(StatefulSetSpec {
                replicas: Some(self.spec.nodes),
                service_name: Some(self.name().to_owned()),
                selector: match_labels(&self.labels),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels.clone()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        ..Default::default()
                    }),
                },
                volume_claim_templates: claims,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
