//! The bench driver: writes the parents, decides when a controller has
//! converged, and counts every request it sends itself.
//!
//! Converged means, for every parent: `status.observedGeneration` equals
//! `metadata.generation`; every child the spec calls for exists with a
//! controller ownerReference to the parent's uid; and the governing replica
//! count is the spec's (the HPA's `minReplicas` while an HPA owns the scale,
//! else the Deployment's `spec.replicas`). A poll LISTs the parents and,
//! only once they all observe their generation, each child kind (metadata
//! only where nothing else is read), indexed by owner uid.

use crate::requests::DriverCount;
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota, Service, ServiceAccount};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes the driver keeps in flight while writing parents.
const CONCURRENCY: usize = 64;
/// Between two convergence checks.
const POLL: Duration = Duration::from_secs(1);
/// Between two progress lines.
const PROGRESS: Duration = Duration::from_secs(5);
/// A phase that takes longer is reported stuck.
const GIVE_UP: Duration = Duration::from_secs(1800);

/// The child kinds, in the order of [`Expected::kinds`].
const KINDS: [&str; 6] = [
    "ServiceAccount",
    "ConfigMap",
    "Deployment",
    "Service",
    "ResourceQuota",
    "HorizontalPodAutoscaler",
];

/// What the spec of parent `i` is.
#[derive(Debug, Clone, Copy)]
struct Spec {
    autoscaling: bool,
    resources: bool,
    config: bool,
    idle: bool,
}

fn spec(i: usize) -> Spec {
    Spec {
        autoscaling: i.is_multiple_of(2),
        resources: true,
        config: true,
        idle: false,
    }
}

fn name(i: usize) -> String {
    format!("ms-{i:05}")
}

/// Parent `i` with `replicas`.
fn parent(i: usize, replicas: i32) -> Value {
    let s = spec(i);
    let mut spec = json!({
        "msName": name(i),
        "image": "registry.example/ms:1",
        "replicas": replicas,
        "autoscaling": s.autoscaling,
        "needAuth": true,
        "idle": s.idle,
    });
    if s.config {
        spec["config"] = json!("password=88888888");
    }
    if s.resources {
        spec["resourceRequirements"] = json!({
            "limits": { "cpu": "1", "memory": "1Gi" },
            "requests": { "cpu": "500m", "memory": "512Mi" }
        });
    }
    json!({
        "apiVersion": "custom.ops/v1",
        "kind": "MicroServiceDeploy",
        "metadata": { "name": name(i) },
        "spec": spec,
    })
}

/// What parent `i` should have once converged.
struct Expected {
    kinds: [bool; 6],
    /// An HPA owns the scale.
    hpa: bool,
    replicas: i32,
}

fn expected(i: usize, replicas: i32, quota: bool) -> Expected {
    let s = spec(i);
    let hpa = s.autoscaling && !s.idle;
    Expected {
        kinds: [true, s.config, true, true, s.resources && quota, hpa],
        hpa,
        replicas: if hpa {
            replicas.max(1)
        } else if s.idle {
            0
        } else {
            replicas
        },
    }
}

/// What a poll found of one parent's children.
#[derive(Debug, Default, Clone)]
struct Found {
    kinds: [bool; 6],
    deployment_replicas: Option<i32>,
    hpa_min_replicas: Option<i32>,
}

/// Where a poll stands.
#[derive(Debug, Clone, Copy)]
struct Progress {
    observed: usize,
    /// Only counted once every parent observes its generation.
    converged: Option<usize>,
    /// The first parent not converged, for the progress line.
    missing: Option<usize>,
}

/// The bench driver of one namespace.
pub struct Driver {
    client: Client,
    namespace: String,
    parents: Api<DynamicObject>,
    pub count: Arc<DriverCount>,
    /// Parents get a ResourceQuota (the plugin does not withhold it).
    quota: bool,
}

fn controller_uid<K: Resource>(object: &K) -> Option<String> {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

impl Driver {
    pub fn new(client: Client, namespace: &str, count: Arc<DriverCount>, quota: bool) -> Self {
        let gvk = GroupVersionKind::gvk("custom.ops", "v1", "MicroServiceDeploy");
        Self {
            parents: Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk)),
            client,
            namespace: namespace.to_owned(),
            count,
            quota,
        }
    }

    /// Applies all `n` parents with `replicas`.
    pub async fn apply_all(&self, n: usize, replicas: i32) {
        stream::iter(0..n)
            .for_each_concurrent(CONCURRENCY, |i| async move {
                self.count.add("APPLY", "custom.ops", "microservicedeploys");
                self.parents
                    .patch(
                        &name(i),
                        &PatchParams::apply("scale-bench").force(),
                        &Patch::Apply(&parent(i, replicas)),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("applying {}: {e}", name(i)));
            })
            .await;
    }

    /// Polls until all `n` parents converged on `replicas`; the time since `started`.
    pub async fn until_converged(&self, what: &str, n: usize, replicas: i32, started: Instant) -> Duration {
        let mut last_print = Instant::now();
        loop {
            let polled = Instant::now();
            let progress = self.progress(n, replicas).await;
            if progress.converged == Some(n) {
                return started.elapsed();
            }
            if last_print.elapsed() >= PROGRESS {
                let converged = progress.converged.map_or("-".to_owned(), |c| c.to_string());
                let missing = progress.missing.map(|i| format!(" (first waiting: {})", name(i)));
                eprintln!(
                    "  {what}: {}/{n} observe their generation, {converged}/{n} converged after {:.0} s{}",
                    progress.observed,
                    started.elapsed().as_secs_f64(),
                    missing.unwrap_or_default()
                );
                last_print = Instant::now();
            }
            assert!(
                started.elapsed() < GIVE_UP,
                "{what}: stuck at {progress:?} after {GIVE_UP:?}"
            );
            tokio::time::sleep(POLL.saturating_sub(polled.elapsed())).await;
        }
    }

    async fn progress(&self, n: usize, replicas: i32) -> Progress {
        self.count.add("LIST", "custom.ops", "microservicedeploys");
        let parents = match self.parents.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                eprintln!("  listing parents: {e}");
                Vec::new()
            }
        };
        let mut uids = vec![None; n];
        let mut observed = 0;
        for p in &parents {
            let Some(i) = p.name_any().strip_prefix("ms-").and_then(|i| i.parse::<usize>().ok()) else {
                continue;
            };
            let generation = p.metadata.generation;
            if i < n && generation.is_some() && p.data["status"]["observedGeneration"].as_i64() == generation {
                observed += 1;
                uids[i] = p.metadata.uid.clone();
            }
        }
        if observed < n {
            let missing = uids.iter().position(Option::is_none);
            return Progress {
                observed,
                converged: None,
                missing,
            };
        }
        let found = self.children().await;
        let mut converged = 0;
        let mut missing = None;
        for (i, uid) in uids.iter().enumerate() {
            let want = expected(i, replicas, self.quota);
            let have = uid.as_ref().and_then(|u| found.get(u)).cloned().unwrap_or_default();
            let kinds = want.kinds.iter().zip(have.kinds).all(|(want, have)| !want || have);
            let scale = if want.hpa {
                have.hpa_min_replicas == Some(want.replicas)
            } else {
                have.deployment_replicas == Some(want.replicas)
            };
            if kinds && scale {
                converged += 1;
            } else if missing.is_none() {
                missing = Some(i);
            }
        }
        Progress {
            observed,
            converged: Some(converged),
            missing,
        }
    }

    /// Every child of the namespace, by controller owner uid.
    async fn children(&self) -> HashMap<String, Found> {
        let lp = ListParams::default();
        let ns = self.namespace.as_str();
        let mut found: HashMap<String, Found> = HashMap::new();
        let mut mark = |uid: Option<String>, kind: usize| {
            if let Some(uid) = uid {
                found.entry(uid).or_default().kinds[kind] = true;
            }
        };
        macro_rules! metadata_of {
            ($kind:ty, $position:expr, $group:expr, $resource:expr) => {
                self.count.add("LIST", $group, $resource);
                match Api::<$kind>::namespaced(self.client.clone(), ns)
                    .list_metadata(&lp)
                    .await
                {
                    Ok(list) => list.items.iter().for_each(|o| mark(controller_uid(o), $position)),
                    Err(e) => eprintln!("  listing {}: {e}", KINDS[$position]),
                }
            };
        }
        metadata_of!(ServiceAccount, 0, "", "serviceaccounts");
        metadata_of!(ConfigMap, 1, "", "configmaps");
        metadata_of!(Service, 3, "", "services");
        metadata_of!(ResourceQuota, 4, "", "resourcequotas");

        self.count.add("LIST", "apps", "deployments");
        match Api::<Deployment>::namespaced(self.client.clone(), ns).list(&lp).await {
            Ok(list) => {
                for d in &list.items {
                    if let Some(uid) = controller_uid(d) {
                        let entry = found.entry(uid).or_default();
                        entry.kinds[2] = true;
                        entry.deployment_replicas = d.spec.as_ref().and_then(|s| s.replicas);
                    }
                }
            }
            Err(e) => eprintln!("  listing Deployments: {e}"),
        }
        self.count.add("LIST", "autoscaling", "horizontalpodautoscalers");
        match Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await
        {
            Ok(list) => {
                for h in &list.items {
                    if let Some(uid) = controller_uid(h) {
                        let entry = found.entry(uid).or_default();
                        entry.kinds[5] = true;
                        entry.hpa_min_replicas = h.spec.as_ref().and_then(|s| s.min_replicas);
                    }
                }
            }
            Err(e) => eprintln!("  listing HorizontalPodAutoscalers: {e}"),
        }
        found
    }

    /// Deletes the parents and children of the namespace, so the next run
    /// starts on an apiserver holding no more than it did. Outside every
    /// measured window.
    pub async fn clean_up(&self) {
        let dp = &DeleteParams::background();
        let lp = &ListParams::default();
        let _ = self.parents.delete_collection(dp, lp).await;
        macro_rules! delete_all {
            ($kind:ty) => {
                let api = Api::<$kind>::namespaced(self.client.clone(), &self.namespace);
                if api.delete_collection(dp, lp).await.is_err() {
                    // Kinds without DELETECOLLECTION: one by one.
                    let names: Vec<String> = api
                        .list_metadata(lp)
                        .await
                        .map(|l| l.items.iter().map(|o| o.name_any()).collect())
                        .unwrap_or_default();
                    stream::iter(names)
                        .for_each_concurrent(CONCURRENCY, |name| {
                            let api = api.clone();
                            async move {
                                let _ = api.delete(&name, dp).await;
                            }
                        })
                        .await;
                }
            };
        }
        delete_all!(ServiceAccount);
        delete_all!(ConfigMap);
        delete_all!(Deployment);
        delete_all!(Service);
        delete_all!(ResourceQuota);
        delete_all!(HorizontalPodAutoscaler);
    }
}
