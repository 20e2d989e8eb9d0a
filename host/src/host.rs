//! The host's main loop, independent of the process around it: keeps the
//! registry (and so one controller per registered kind) in step with the
//! plugins folder and the registration objects, while this replica
//! leads. Tests run it in-process against a test control plane; `trellis
//! run` wraps it with signals and the metrics server.

use crate::controller::{PluginAccounts, Shared};
use crate::leader::{LeaderElector, LeaderOptions};
use crate::metrics::Metrics;
use crate::registry::{Registry, TenantCeilings};
use crate::runtime::{Limits, Runtime, RuntimeConfig, RuntimeError};
use crate::server::Readiness;
use kube::runtime::events::Reporter;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the host serves and how.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Folder of drop-in `.wasm` plugins.
    pub plugins_dir: PathBuf,
    /// Reconciles of one kind at once.
    pub concurrency: u16,
    /// Default limits of plugin calls.
    pub limits: Limits,
    /// How often the plugins folder and the registrations are read.
    pub poll: Duration,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Lead over this Lease before reconciling (always lead when `None`).
    pub leader: Option<LeaderOptions>,
    /// Name of this replica in events (`reportingInstance`).
    pub instance: Option<String>,
    /// Compiled modules kept here across restarts (none when `None`).
    pub module_cache_dir: Option<PathBuf>,
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
}

impl HostOptions {
    /// Defaults for a host over `plugins_dir`: 16 reconciles per kind,
    /// default limits, a 2 s poll, all namespaces, no leader election,
    /// plugins acting as `trellis-plugin-<name>` of `trellis-system`.
    pub fn new(plugins_dir: impl Into<PathBuf>) -> Self {
        Self {
            plugins_dir: plugins_dir.into(),
            concurrency: 16,
            limits: Limits::default(),
            poll: Duration::from_secs(2),
            namespace: None,
            leader: None,
            instance: None,
            module_cache_dir: None,
            client_config: None,
            plugin_accounts: PluginAccounts::OwnServiceAccounts {
                namespace: "trellis-system".into(),
            },
            tenant_ceilings: TenantCeilings::default(),
            service_account_consent: false,
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
) -> Result<(), RuntimeError> {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: u32::from(options.concurrency).saturating_mul(4).max(16),
        module_cache_dir: options.module_cache_dir.clone(),
        ..RuntimeConfig::default()
    })?;
    let shared = Shared {
        client: client.clone(),
        metrics,
        reporter: Reporter {
            controller: "trellis".into(),
            instance: options.instance.clone(),
        },
        concurrency: options.concurrency,
        namespace: options.namespace.clone(),
        client_config: options.client_config.clone(),
        plugin_accounts: options.plugin_accounts.clone(),
        service_account_consent: options.service_account_consent,
    };
    let elector = options.leader.clone().map(|o| LeaderElector::new(client, o));
    let renew_every = options.leader.as_ref().map_or(options.poll, LeaderOptions::renew_every);
    let lease_duration = options.leader.as_ref().map(|o| o.lease_duration);
    tracing::info!(plugins_dir = %options.plugins_dir.display(), namespace = ?options.namespace, leader_election = elector.is_some(), "trellis host starting");

    let mut registry: Option<Registry> = None;
    let mut last_renewed = Instant::now();
    let mut sync_tick = tokio::time::interval(options.poll);
    let mut lease_tick = tokio::time::interval(renew_every);
    loop {
        tokio::select! {
            _ = lease_tick.tick(), if elector.is_some() => {
                let elector = elector.as_ref().expect("guarded by the select");
                match elector.try_acquire_or_renew().await {
                    Ok(true) => {
                        last_renewed = Instant::now();
                        if registry.is_none() {
                            tracing::info!("leading: starting controllers");
                            registry = Some(Registry::new(runtime.clone(), shared.clone(), &options.plugins_dir, options.limits, options.tenant_ceilings));
                        }
                    }
                    Ok(false) => {
                        if registry.take().is_some() {
                            tracing::warn!("lost the leader lease: controllers stopped");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the leader lease");
                        if registry.is_some() && lease_duration.is_some_and(|d| last_renewed.elapsed() > d) {
                            registry = None;
                            tracing::warn!("leader lease expired: controllers stopped");
                        }
                    }
                }
                ready.set_ready();
            }
            _ = sync_tick.tick() => {
                if elector.is_none() && registry.is_none() {
                    registry = Some(Registry::new(runtime.clone(), shared.clone(), &options.plugins_dir, options.limits, options.tenant_ceilings));
                }
                if let Some(registry) = registry.as_mut() {
                    registry.sync().await;
                    ready.set_ready();
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!("shutting down");
    drop(registry);
    if let Some(elector) = elector {
        elector.release().await;
    }
    Ok(())
}
