//! The host's main loop, independent of the process around it: keeps the
//! registry (and so one controller per registered kind) in step with the
//! plugins folder and the registration objects, while this replica
//! leads. Tests run it in-process against a test control plane; `trellis
//! run` wraps it with signals and the metrics server.

use crate::admission::{self, AdmissionError, AdmissionOptions, Serving, Webhooks};
use crate::controller::{CallGate, GateLimits, PluginAccounts, Shared};
use crate::leader::{LeaderElector, LeaderOptions};
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::oci::OciError;
use crate::registry::oci::OciSettings;
use crate::registry::{PluginFolder, Registry, Settings, TenantCeilings};
use crate::runtime::{Limits, Runtime, RuntimeConfig, RuntimeError};
use crate::server::Readiness;
use crate::shard::{Ownership, ShardLeases, ShardingOptions};
use kube::runtime::events::Reporter;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the host serves and how.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Folder of drop-in `.wasm` plugins.
    pub plugins_dir: PathBuf,
    /// Plugins of the folder never loaded, by file name without `.wasm`
    /// (a chart's disabled bundled plugins).
    pub disabled_plugins: BTreeSet<String>,
    /// Reconciles of one kind at once.
    pub concurrency: u16,
    /// Default limits of plugin calls.
    pub limits: Limits,
    /// How often the plugins folder and the registrations are read.
    pub poll: Duration,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Lead over this Lease before reconciling (always lead when `None`).
    /// With sharding, the leader does the cluster-scoped work only.
    pub leader: Option<LeaderOptions>,
    /// Share the parents among the replicas by shard Leases (`None`: the
    /// leader reconciles all).
    pub sharding: Option<ShardingOptions>,
    /// Name of this replica in events (`reportingInstance`).
    pub instance: Option<String>,
    /// Compiled modules kept here across restarts (none when `None`).
    pub module_cache_dir: Option<PathBuf>,
    /// Compiled modules copied into `module_cache_dir` at start where it
    /// lacks them (an image's pre-warmed cache, read-only).
    pub module_cache_seed: Option<PathBuf>,
    /// The configuration the client was made from: the host needs it to act
    /// as tenants' ServiceAccounts (tenant registrations are refused
    /// without it).
    pub client_config: Option<kube::Config>,
    /// Whom folder plugins (and ClusterReconcilerPlugins naming no
    /// ServiceAccount) act as.
    pub plugin_accounts: PluginAccounts,
    /// The most a tenant's registration may ask for.
    pub tenant_ceilings: TenantCeilings,
    /// Tenants' ServiceAccounts must name the registrations that act as them
    /// (annotation `trellis.dev/allowed-registrations`).
    pub service_account_consent: bool,
    /// Plugin calls executing at once, host-wide: calls take turns on them,
    /// in turn by registration.
    pub call_slots: usize,
    /// Plugin calls admitted at once, each holding a sandbox; `None`: eight
    /// per call slot, at least 64.
    pub instance_slots: Option<usize>,
    /// The memory limits of the calls admitted at once add up to at most
    /// this, in MiB.
    pub memory_budget_mib: u32,
    /// How long a call waits for memory before it fails.
    pub memory_wait: Duration,
    /// Serve admission webhooks (none when `None`).
    pub admission: Option<AdmissionOptions>,
    /// PEM files of CAs trusted for OCI registries, besides the system's.
    pub registry_ca_files: Vec<PathBuf>,
    /// How often a tag of `spec.module.oci` is resolved again.
    pub oci_refresh: Duration,
    /// PEM files of cosign public keys of which one must have signed every
    /// module of `spec.module.oci`; none required when empty.
    pub cosign_key_files: Vec<PathBuf>,
}

/// How long the registry waits after a change for more before it syncs.
const COALESCE_CHANGES: Duration = Duration::from_millis(100);

/// Instances of the pool beyond the calls admitted, for loading modules.
const SPARE_INSTANCES: usize = 8;

/// Plugin calls executing at once by default: one per core. A plugin call
/// is all CPU (its one import, `log`, never waits), so more would only
/// share the cores thinner, and a newcomer given a turn would run at a
/// fraction of a core beside the calls it waited for.
pub fn default_call_slots() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

impl HostOptions {
    /// Defaults for a host over `plugins_dir`: 16 reconciles per kind,
    /// default limits, a 2 s poll, all namespaces, no leader election,
    /// plugins acting as `trellis-plugin-<name>` of `trellis-system`.
    pub fn new(plugins_dir: impl Into<PathBuf>) -> Self {
        Self {
            plugins_dir: plugins_dir.into(),
            disabled_plugins: BTreeSet::new(),
            concurrency: 16,
            limits: Limits::default(),
            poll: Duration::from_secs(2),
            namespace: None,
            leader: None,
            sharding: None,
            instance: None,
            module_cache_dir: None,
            module_cache_seed: None,
            client_config: None,
            plugin_accounts: PluginAccounts::OwnServiceAccounts {
                namespace: "trellis-system".into(),
            },
            tenant_ceilings: TenantCeilings::default(),
            service_account_consent: false,
            call_slots: default_call_slots(),
            instance_slots: None,
            memory_budget_mib: crate::memory::default_budget_mib(),
            memory_wait: Duration::from_secs(10),
            admission: None,
            registry_ca_files: Vec::new(),
            oci_refresh: Duration::from_secs(300),
            cosign_key_files: Vec::new(),
        }
    }
}

/// Runs the host until `shutdown` turns true. `ready` is set once this
/// replica has read its registrations (or is a follower).
pub async fn run_host(
    client: kube::Client,
    options: HostOptions,
    metrics: Metrics,
    ready: Readiness,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), HostError> {
    let oci = oci_settings(&options)?;
    let slots = options.call_slots.max(1);
    let instances = options.instance_slots.unwrap_or((8 * slots).max(64)).max(1);
    // Every call admitted holds an instance; the spare ones are for loading
    // modules (their `info`), so the pool never runs out.
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: u32::try_from(instances + SPARE_INSTANCES).unwrap_or(u32::MAX),
        module_cache_dir: options.module_cache_dir.clone(),
        module_cache_seed: options.module_cache_seed.clone(),
        ..RuntimeConfig::default()
    })?;
    let ownership = options.sharding.as_ref().map(|s| Ownership::new(s.shards, s.by));
    let shared = Shared {
        ownership: ownership.clone(),
        client: client.clone(),
        metrics,
        reporter: Reporter {
            controller: "trellis".into(),
            instance: options.instance.clone(),
        },
        concurrency: options.concurrency,
        namespace: options.namespace.clone(),
        client_config: options.client_config.clone(),
        service_account_consent: options.service_account_consent,
        calls: CallGate::new(GateLimits {
            cpu_slots: slots,
            instances,
            budget_mib: options.memory_budget_mib,
            memory_wait: options.memory_wait,
        }),
    };
    // The webhook server runs in every replica; only the leader fills in
    // what it answers for and the certificate it presents.
    let serving = Serving::default();
    let webhook_server = match &options.admission {
        Some(admission) => {
            let listener = admission::server::bind(admission.addr).await?;
            let (serving, mut stop, client) = (serving.clone(), shutdown.clone(), client.clone());
            Some(tokio::spawn(async move {
                admission::server::serve(listener, serving.cert, serving.targets, client, async move {
                    let _ = stop.changed().await;
                })
                .await
            }))
        }
        None => None,
    };
    tracing::info!(plugins_dir = %options.plugins_dir.display(), namespace = ?options.namespace, leader_election = options.leader.is_some(), call_slots = slots, instance_slots = instances, memory_budget_mib = options.memory_budget_mib, "trellis host starting");
    let shards_gauge = ownership.clone().map(|ownership| {
        let metrics = shared.metrics.clone();
        tokio::spawn(async move {
            let mut held = ownership.subscribe();
            loop {
                metrics.set_shards_held(held.borrow_and_update().len());
                if held.changed().await.is_err() {
                    break;
                }
            }
        })
    });
    let shard_leases = options
        .sharding
        .as_ref()
        .zip(ownership)
        .map(|(sharding, ownership)| ShardLeases::spawn(client.clone(), sharding.leases.clone(), ownership));
    let sharded = shard_leases.is_some();
    let leadership = options
        .leader
        .clone()
        .map(|o| Leadership::spawn(LeaderElector::new(client, o)));
    // Without leader election this replica always leads.
    let (_always, always_leading) = watch::channel(true);
    let mut leading = leadership.as_ref().map_or(always_leading, |l| l.leading.clone());
    let mut registry: Option<RegistryTask> = None;
    // Whether the first election round has been decided (the channel's
    // first value is only a placeholder).
    let mut decided = leadership.is_none();
    loop {
        let lead = *leading.borrow_and_update();
        if sharded {
            // Every replica runs controllers (for the shards it holds); the
            // leader also does the cluster-scoped work.
            shared.metrics.set_leading(lead);
        }
        if (lead || sharded) && registry.is_none() {
            tracing::info!(leading = lead, sharded, "starting controllers");
            let (stop, stopped) = watch::channel(false);
            let mut new_registry = Registry::new(
                runtime.clone(),
                shared.clone(),
                PluginFolder::new(&options.plugins_dir, &options.disabled_plugins),
                Settings {
                    limits: options.limits,
                    accounts: options.plugin_accounts.clone(),
                    ceilings: options.tenant_ceilings,
                    oci: oci.clone(),
                },
            );
            if let Some(admission) = &options.admission {
                new_registry.serve_admission(Webhooks::new(shared.client.clone(), admission.clone(), serving.clone()));
            }
            if sharded {
                new_registry.cluster_work_while(leading.clone());
            }
            let task = tokio::spawn(keep_registry(new_registry, options.poll, ready.clone(), stopped));
            registry = Some(RegistryTask { task, stop });
            shared.metrics.set_leading(lead);
        } else if !lead && !sharded {
            if let Some(task) = registry.take() {
                // Another replica may lead soon: stop now, not gracefully.
                task.task.abort();
                let _ = task.task.await;
                shared.metrics.set_leading(false);
                tracing::warn!("not leading: controllers stopped");
            }
            if decided {
                // A follower is ready once it knows it follows.
                ready.set_ready();
            }
        }
        tokio::select! {
            changed = leading.changed() => {
                if changed.is_err() {
                    break;
                }
                decided = true;
            }
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!("shutting down");
    if let Some(registry) = registry.take() {
        // Reconciles in flight finish their writes; then the Lease goes.
        let _ = registry.stop.send(true);
        if tokio::time::timeout(GRACEFUL_SHUTDOWN + Duration::from_secs(5), registry.task)
            .await
            .is_err()
        {
            tracing::warn!("the registry did not stop in time");
        }
    }
    if let Some(shard_leases) = shard_leases {
        // Nothing is in flight any more: the shards go at once.
        shard_leases.release().await;
    }
    if let Some(gauge) = shards_gauge {
        gauge.abort();
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    if let Some(server) = webhook_server {
        server.abort();
    }
    Ok(())
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// A `--registry-ca` file cannot be read or is no CA certificate.
    #[error("registry CA {path}: {cause}")]
    RegistryCa {
        /// The file.
        path: PathBuf,
        /// Why it is unusable.
        cause: RegistryCaError,
    },
    /// A `--cosign-key` file cannot be read or is no cosign public key.
    #[error("cosign key {path}: {cause}")]
    CosignKey {
        /// The file.
        path: PathBuf,
        /// Why it is unusable.
        cause: CosignKeyError,
    },
}

/// Why a cosign key file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CosignKeyError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Unusable(#[from] crate::oci::signature::SignatureError),
}

/// Why a registry CA file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum RegistryCaError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Unusable(#[from] OciError),
}

/// The registries' settings, with each CA and key file read and checked.
fn oci_settings(options: &HostOptions) -> Result<OciSettings, HostError> {
    let mut extra_roots_pem = Vec::new();
    for path in &options.registry_ca_files {
        let failed = |cause: RegistryCaError| HostError::RegistryCa {
            path: path.clone(),
            cause,
        };
        let pem = std::fs::read(path).map_err(|e| failed(e.into()))?;
        crate::oci::check_roots(std::slice::from_ref(&pem)).map_err(|e| failed(e.into()))?;
        extra_roots_pem.push(pem);
    }
    let mut cosign_keys = Vec::new();
    for path in &options.cosign_key_files {
        let failed = |cause: CosignKeyError| HostError::CosignKey {
            path: path.clone(),
            cause,
        };
        let pem = std::fs::read(path).map_err(|e| failed(e.into()))?;
        cosign_keys.push(crate::oci::signature::CosignKey::from_pem(&pem).map_err(|e| failed(e.into()))?);
    }
    Ok(OciSettings {
        extra_roots_pem,
        refresh: options.oci_refresh.max(Duration::from_secs(1)),
        cosign_keys,
    })
}

/// How long reconciles in flight may take to finish at shutdown.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);

/// The registry's task, and how to ask it to stop gracefully.
struct RegistryTask {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// Brings the registry in line whenever a registration or a module
/// ConfigMap changes (a few at once are taken together), and every `poll`
/// (the plugins folder, kinds not served yet), in a task of its own: a slow
/// sync delays nothing else. Aborting the task drops the registry and so
/// stops every controller at once; `stop` stops them gracefully.
async fn keep_registry(mut registry: Registry, poll: Duration, ready: Readiness, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let changes = registry.changes();
    loop {
        tokio::select! {
            () = async {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = changes.notified() => tokio::time::sleep(COALESCE_CHANGES).await,
                }
                registry.sync().await;
                ready.set_ready();
            } => {}
            _ = stop.changed() => break,
        }
    }
    registry.shut_down(GRACEFUL_SHUTDOWN).await;
}
