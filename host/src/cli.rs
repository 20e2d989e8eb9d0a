//! The `trellis` command line.

use crate::render::{RenderInput, render};
use crate::runtime::Limits;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Trellis: a Kubernetes operator host for sandboxed WebAssembly reconcilers.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a plugin offline on YAML files and print the desired children and
    /// status as a YAML stream.
    Render(RenderArgs),
    /// Run a folder of scenarios through a plugin: each gives a parent,
    /// observed children and related objects, and the children, status,
    /// events or error expected; a failure names every field that differs.
    Test(TestArgs),
    /// Scaffold a plugin project: its source with a typed spec and status,
    /// the CRD, a sample, scenarios and a Makefile (build, test, render,
    /// install, deploy, run).
    Init(InitArgs),
    /// Run the operator host against the cluster of KUBECONFIG (or the pod's).
    Run(Box<RunArgs>),
    /// Print the CRDs of ClusterReconcilerPlugin and ReconcilerPlugin (the
    /// files in deploy/crds/), or only the one named.
    Crd {
        #[arg(value_enum)]
        kind: Option<CrdKind>,
    },
    /// Work with plugin modules.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Show which replica leads and which holds each shard, from the Leases
    /// of the host's namespace (in the cluster of KUBECONFIG).
    Status(StatusArgs),
}

/// `trellis status`
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The host's namespace, where its Leases are.
    #[arg(long, short = 'n', env = "POD_NAMESPACE", default_value = "trellis-system")]
    pub namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "trellis-leader")]
    pub lease_name: String,
}

/// Prints `trellis status`.
pub fn run_status(args: StatusArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let text = runtime.block_on(async {
        let client = kube::Client::try_default().await?;
        crate::shard::status::status(client, &args.namespace, &args.lease_name)
            .await
            .map_err(Box::<dyn std::error::Error>::from)
    })?;
    print!("{text}");
    Ok(())
}

/// `trellis plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print a ConfigMap holding the module and a ClusterReconcilerPlugin (or,
    /// with --service-account, a tenant's ReconcilerPlugin) registering
    /// it (sha256 pinned), ready for `kubectl apply --server-side -f -`.
    Pack(PackArgs),
    /// Publish a module to an OCI registry as a Wasm artifact (config
    /// application/vnd.wasm.config.v0+json, layer application/wasm), after
    /// checking it loads. Credentials from TRELLIS_REGISTRY_USERNAME and
    /// TRELLIS_REGISTRY_PASSWORD; prints the manifest's digest.
    Push(PushArgs),
    /// Compile modules into a module cache ahead of time, checking that each
    /// loads, so a host using that cache (or seeded from it with
    /// --module-cache-seed) serves them without compiling.
    Compile(CompileArgs),
}

/// Arguments of `trellis plugin compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The modules (`.wasm`).
    #[arg(required = true)]
    pub modules: Vec<PathBuf>,
    /// The cache to fill (as `trellis run --module-cache`).
    #[arg(long, value_name = "DIR")]
    pub module_cache: PathBuf,
}

/// Runs `trellis plugin compile`, printing a line per module.
pub fn run_compile(args: CompileArgs) -> Result<(), crate::precompile::PrecompileError> {
    for compiled in crate::precompile::precompile(&args.modules, &args.module_cache)? {
        println!(
            "compiled {}: {} {} (reconciles {}; module sha256 {}) in {} ms",
            compiled.path.display(),
            compiled.info.name,
            compiled.info.version,
            compiled.info.parent,
            compiled.digest,
            compiled.took.as_millis()
        );
    }
    Ok(())
}

/// Arguments of `trellis plugin push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The module (`.wasm`).
    pub module: PathBuf,
    /// Where: registry/repository:tag.
    pub reference: String,
    /// A PEM CA certificate to trust for the registry, besides the system's.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// Runs `trellis plugin push`, printing where the module now is.
pub fn run_push(args: PushArgs) -> Result<(), crate::oci::publish::PublishError> {
    let published = crate::oci::publish::publish(&crate::oci::publish::PublishInput {
        module: args.module,
        reference: args.reference.clone(),
        ca_file: args.ca_file,
    })?;
    let info = &published.info;
    println!(
        "pushed {} {} (reconciles {}; module sha256 {}) to {}\ndigest: {}\npinned: {}",
        info.name,
        info.version,
        info.parent,
        published.pushed.module_sha256,
        args.reference,
        published.pushed.manifest_digest,
        published.pushed.pinned
    );
    Ok(())
}

/// Arguments of `trellis plugin pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The module (`.wasm`).
    pub module: PathBuf,
    /// Name of the ConfigMap and the registration.
    #[arg(long)]
    pub name: String,
    /// Namespace of the ConfigMap (and of a tenant's ReconcilerPlugin).
    #[arg(long, short = 'n', default_value = "trellis-system")]
    pub namespace: String,
    /// Register for a tenant: a namespaced ReconcilerPlugin acting as this
    /// ServiceAccount of the namespace (a ClusterReconcilerPlugin without).
    #[arg(long)]
    pub service_account: Option<String>,
    /// For a ClusterReconcilerPlugin: the ServiceAccount it acts as,
    /// NAMESPACE/NAME (default: trellis-plugin-<name> of the host's namespace).
    #[arg(long, conflicts_with = "service_account")]
    pub service_account_ref: Option<String>,
    /// Compress the module even when it fits without.
    #[arg(long, conflicts_with = "oci")]
    pub gzip: bool,
    /// Name this OCI artifact (`trellis plugin push`'s REF or its pinned
    /// REGISTRY/REPO@sha256:...) instead of printing a ConfigMap; a digest
    /// is pinned to the module's sha256, a tag is followed.
    #[arg(long, value_name = "REF")]
    pub oci: Option<String>,
    /// The pull Secret of the namespace (`-n`) holding the registry's credentials.
    #[arg(long, value_name = "NAME", requires = "oci")]
    pub pull_secret: Option<String>,
    /// A cosign public key's PEM file (`cosign.pub`): the registration
    /// serves the artifact only when signed by that key.
    #[arg(long, value_name = "FILE", requires = "oci")]
    pub cosign_key: Option<PathBuf>,
}

/// Runs `trellis plugin pack`, printing the YAML.
pub fn run_pack(args: PackArgs) -> Result<(), crate::pack::PackError> {
    let input = crate::pack::PackInput {
        module: args.module,
        name: args.name,
        namespace: args.namespace,
        service_account: args.service_account,
        service_account_ref: args.service_account_ref,
        gzip: args.gzip,
        oci: args.oci.map(|reference| crate::pack::OciTarget {
            reference,
            pull_secret: args.pull_secret,
            cosign_key: args.cosign_key,
        }),
    };
    let yaml = crate::pack::pack(&input)?;
    // A reader that stops early (`| head`) is not an error of pack's.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), yaml.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.map_err(crate::pack::PackError::Print),
    }
}

/// Arguments of `trellis run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Folder of drop-in plugin modules (`*.wasm`).
    #[arg(long, env = "TRELLIS_PLUGINS_DIR", default_value = "plugins")]
    pub plugins_dir: PathBuf,
    /// A plugin of the folder not to serve: its file NAME.wasm is left
    /// alone as if it were not there (may be repeated).
    #[arg(long = "disable-plugin", value_name = "NAME")]
    pub disable_plugin: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "TRELLIS_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Reconciles of one kind running at once. 16 keep the API server busy
    /// (a reconcile mostly waits for its writes); more only hold more
    /// requests and responses in memory at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// How often the plugins folder is read and the registrations (kept by
    /// watches) are brought in line, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub poll_ms: u64,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "TRELLIS_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Reconcile only while holding a Lease, so replicas take over from each other.
    #[arg(long, env = "TRELLIS_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "trellis-system")]
    pub lease_namespace: String,
    /// Namespace of the plugins' own ServiceAccounts: a folder plugin (and a
    /// ClusterReconcilerPlugin naming none) acts as `trellis-plugin-<name>`
    /// there (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "trellis-system")]
    pub plugin_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "trellis-leader")]
    pub lease_name: String,
    /// Seconds a leader Lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// Share the parents among the replicas in this many shards, each held
    /// by one replica through a Lease `trellis-shard-<i>` (in the leader
    /// Lease's namespace, lasting as long). More than 1 implies
    /// `--leader-elect`: the leader does the cluster-scoped work.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
    /// What a parent's shard is computed from: `name` (its namespace and
    /// name) or `namespace` (a tenant's parents stay on one replica).
    #[arg(long, value_enum, default_value_t = crate::shard::ShardBy::Name)]
    pub shard_by: crate::shard::ShardBy,
    /// This replica's name (the pod's name), for the Lease and events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Where compiled modules are kept, so a restart with unchanged modules
    /// does not compile again (default: ~/.cache/trellis/modules; `none` disables).
    #[arg(long, env = "TRELLIS_MODULE_CACHE")]
    pub module_cache: Option<PathBuf>,
    /// A folder of compiled modules (`trellis plugin compile`'s, such as
    /// the image's pre-warmed one) copied into the module cache at start
    /// where the cache lacks them.
    #[arg(long, value_name = "DIR")]
    pub module_cache_seed: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The most memory a tenant's ReconcilerPlugin may ask for, in MiB per
    /// instance (more is refused: LimitAboveCeiling).
    #[arg(long, default_value_t = 256)]
    pub tenant_max_memory_mib: usize,
    /// The longest call deadline a tenant may ask for, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub tenant_max_timeout_ms: u64,
    /// The most reconciles at once a tenant may ask for.
    #[arg(long, default_value_t = 8)]
    pub tenant_max_concurrency: u16,
    /// Stricter than Kubernetes' rule for Pods: a tenant's ReconcilerPlugin
    /// may act as a ServiceAccount only if the ServiceAccount's annotation
    /// `trellis.dev/allowed-registrations` names it (or is `*`).
    #[arg(long, env = "TRELLIS_SERVICE_ACCOUNT_CONSENT")]
    pub service_account_consent: bool,
    /// Plugin calls executing at once, host-wide: calls take turns of 10 ms
    /// on them, in turn by registration (default: one per core).
    #[arg(long)]
    pub call_slots: Option<usize>,
    /// Plugin calls admitted at once, host-wide, each holding a sandbox
    /// (default: eight per call slot, at least 64).
    #[arg(long)]
    pub instance_slots: Option<usize>,
    /// The memory limits of the plugin calls admitted at once add up to at
    /// most this, in MiB (default: the container's memory limit minus 192).
    #[arg(long)]
    pub memory_budget_mib: Option<u32>,
    /// Serve admission webhooks on this address (plugins that ask for
    /// `validate` or `default` get webhook configurations). Without it, no
    /// webhook is registered.
    #[arg(long, env = "TRELLIS_WEBHOOK_ADDR")]
    pub webhook_addr: Option<std::net::SocketAddr>,
    /// How the API server reaches the webhooks when the host runs outside
    /// the cluster, e.g. `https://127.0.0.1:9443` (default: the Service
    /// `trellis-webhook` of the host's namespace).
    #[arg(long, env = "TRELLIS_WEBHOOK_URL", requires = "webhook_addr")]
    pub webhook_url: Option<String>,
    /// Days the webhooks' CA is valid; it is replaced two thirds into its life.
    #[arg(long, default_value_t = 365)]
    pub webhook_ca_days: u64,
    /// Refuse a ReconcilerPlugin or ClusterReconcilerPlugin naming a
    /// ServiceAccount that the requesting user may not impersonate (a
    /// validating webhook of the host; needs --webhook-addr).
    #[arg(long, env = "TRELLIS_CHECK_SERVICE_ACCOUNT_USE", requires = "webhook_addr")]
    pub check_service_account_use: bool,
    /// This pod's IP (downward API): in cluster, the leader points the
    /// webhook Service's EndpointSlice at it.
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<std::net::IpAddr>,
    /// A PEM file of CA certificates trusted for OCI registries besides the
    /// system's (`spec.module.oci`); may be given more than once.
    #[arg(long = "registry-ca", value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
    /// How often the tag of an OCI module is resolved again, in seconds (a
    /// registration's change resolves it at once; a digest never again).
    #[arg(long, default_value_t = 300)]
    pub oci_refresh_seconds: u64,
    /// A PEM file of a cosign public key (ECDSA P-256): every module of
    /// `spec.module.oci` must carry a cosign signature by it, or by another
    /// key given (the flag may be repeated, as while keys rotate), or it is
    /// refused with SignatureInvalid.
    #[arg(long = "cosign-key", value_name = "FILE")]
    pub cosign_key: Vec<PathBuf>,
}

impl TryFrom<RunArgs> for crate::run::RunOptions {
    type Error = crate::admission::AdmissionError;

    fn try_from(a: RunArgs) -> Result<Self, Self::Error> {
        let admission = match a.webhook_addr {
            Some(addr) => {
                let mut options =
                    crate::admission::AdmissionOptions::new(addr, a.webhook_url.clone(), &a.plugin_namespace)?;
                options.ca_validity = Duration::from_secs(a.webhook_ca_days.max(1) * 24 * 3600);
                options.pod_ip = a.pod_ip;
                options.check_service_account_use = a.check_service_account_use;
                Some(options)
            }
            None => None,
        };
        let identity = a.identity.clone().unwrap_or_else(default_identity);
        let sharding = (a.shards > 1).then(|| crate::shard::ShardingOptions {
            shards: a.shards,
            by: a.shard_by,
            leases: crate::shard::ShardOptions {
                namespace: a.lease_namespace.clone(),
                identity: identity.clone(),
                lease_duration: Duration::from_secs(a.lease_seconds.max(3)),
            },
        });
        let leader = (a.leader_elect || sharding.is_some()).then(|| crate::leader::LeaderOptions {
            namespace: a.lease_namespace.clone(),
            name: a.lease_name.clone(),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(a.lease_seconds.max(3)),
        });
        Ok(Self {
            host: crate::host::HostOptions {
                plugins_dir: a.plugins_dir,
                disabled_plugins: a.disable_plugin.into_iter().collect(),
                concurrency: a.concurrency,
                limits: a.limits.into(),
                poll: Duration::from_millis(a.poll_ms),
                namespace: a.watch_namespace,
                leader,
                sharding,
                instance: Some(identity),
                module_cache_dir: module_cache_dir(a.module_cache),
                module_cache_seed: a.module_cache_seed,
                // Filled in by `run` with the configuration it infers.
                client_config: None,
                plugin_accounts: crate::controller::PluginAccounts::OwnServiceAccounts {
                    namespace: a.plugin_namespace,
                },
                tenant_ceilings: crate::registry::TenantCeilings {
                    memory_mib: a.tenant_max_memory_mib,
                    timeout_ms: a.tenant_max_timeout_ms,
                    concurrent_reconciles: a.tenant_max_concurrency,
                },
                service_account_consent: a.service_account_consent,
                call_slots: a.call_slots.unwrap_or_else(crate::host::default_call_slots),
                instance_slots: a.instance_slots,
                memory_budget_mib: a.memory_budget_mib.unwrap_or_else(crate::memory::default_budget_mib),
                memory_wait: Duration::from_secs(10),
                admission,
                registry_ca_files: a.registry_ca,
                oci_refresh: Duration::from_secs(a.oci_refresh_seconds.max(1)),
                cosign_key_files: a.cosign_key,
            },
            metrics_addr: a.metrics_addr,
        })
    }
}

/// The module cache folder: as given (`none` for no cache), else under `~/.cache`.
fn module_cache_dir(given: Option<PathBuf>) -> Option<PathBuf> {
    match given {
        Some(dir) if dir.as_os_str() == "none" => None,
        Some(dir) => Some(dir),
        None => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/trellis/modules")),
    }
}

/// `HOSTNAME-PID` when no pod name is given.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "trellis".into());
    format!("{host}-{}", std::process::id())
}

/// Arguments of `trellis render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The plugin module (`.wasm`).
    #[arg(long)]
    pub plugin: PathBuf,
    /// YAML file with the parent object.
    #[arg(long)]
    pub parent: PathBuf,
    /// YAML stream of observed children.
    #[arg(long)]
    pub observed: Option<PathBuf>,
    /// YAML stream of related objects.
    #[arg(long)]
    pub related: Option<PathBuf>,
    /// The plugin's config, as JSON.
    #[arg(long)]
    pub config: Option<String>,
    /// Namespace of a parent that names none.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Print what the admission webhooks would answer for the parent on
    /// this operation (the verdict, the messages and the JSONPatch of the
    /// defaults) instead of reconciling it.
    #[arg(long, value_enum)]
    pub admission: Option<AdmissionOperation>,
    /// The stored object, for `--admission update`.
    #[arg(long, requires = "admission")]
    pub old: Option<PathBuf>,
    /// Where compiled modules are kept, shared with `trellis run`, so a
    /// render of an unchanged module does not compile it again (default:
    /// ~/.cache/trellis/modules; `none` disables).
    #[arg(long, env = "TRELLIS_MODULE_CACHE")]
    pub module_cache: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Arguments of `trellis init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The plugin's language.
    #[arg(long, value_enum)]
    pub lang: crate::scaffold::Language,
    /// The API group of the kind (e.g. example.com).
    #[arg(long)]
    pub group: String,
    /// The API version of the kind (e.g. v1alpha1).
    #[arg(long = "version")]
    pub api_version: String,
    /// The kind (e.g. Website).
    #[arg(long)]
    pub kind: String,
    /// The folder to create (default: the plugin's name, the kind in kebab case).
    pub dir: Option<PathBuf>,
    /// The Trellis checkout whose SDKs the project uses (default: the one
    /// this binary was built from).
    #[arg(long, env = "TRELLIS_SDK_ROOT")]
    pub sdk_root: Option<PathBuf>,
}

/// Runs `trellis init`: writes the project and says what to type next.
pub fn run_init(args: InitArgs) -> Result<(), crate::scaffold::ScaffoldError> {
    use crate::scaffold::{Project, check_sdk_root, plan, plugin_name, write};
    let sdk_root = args
        .sdk_root
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")));
    let sdk_root = sdk_root.canonicalize().unwrap_or(sdk_root);
    check_sdk_root(&sdk_root, args.lang)?;
    let project = Project {
        language: args.lang,
        group: args.group,
        version: args.api_version,
        kind: args.kind,
        sdk_root,
    };
    let files = plan(&project)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(plugin_name(&project.kind)));
    write(&dir, &files)?;
    for file in &files {
        println!("wrote {}", dir.join(file.path).display());
    }
    println!("next: cd {} && make test", dir.display());
    Ok(())
}

/// Arguments of `trellis test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The folder of scenarios (its `*.yaml` files).
    pub dir: PathBuf,
    /// The plugin module (`.wasm`).
    #[arg(long)]
    pub plugin: PathBuf,
    /// Where compiled modules are kept (as for `render`).
    #[arg(long, env = "TRELLIS_MODULE_CACHE")]
    pub module_cache: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Why `trellis test` failed.
#[derive(Debug, thiserror::Error)]
pub enum TestFailure {
    #[error(transparent)]
    Scenarios(#[from] crate::scenario::ScenarioError),
    #[error("{failed} of {total} scenarios failed")]
    Failed { failed: usize, total: usize },
}

/// Runs `trellis test`: one line per scenario, the differences of each
/// failing one below it, then a summary.
pub fn run_test(args: TestArgs) -> Result<(), TestFailure> {
    let outcomes = crate::scenario::run_dir(
        &args.plugin,
        &args.dir,
        args.limits.into(),
        module_cache_dir(args.module_cache),
    )?;
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    for outcome in &outcomes {
        let verdict = if outcome.passed() { "ok  " } else { "FAIL" };
        println!("{verdict} {} ({})", outcome.title, outcome.path.display());
        for mismatch in &outcome.mismatches {
            println!("       {mismatch}");
        }
    }
    println!(
        "{} scenarios: {} passed, {failed} failed",
        outcomes.len(),
        outcomes.len() - failed
    );
    match failed {
        0 => Ok(()),
        failed => Err(TestFailure::Failed {
            failed,
            total: outcomes.len(),
        }),
    }
}

/// An operation `trellis render --admission` answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdmissionOperation {
    Create,
    Update,
}

/// Limits of a plugin call.
#[derive(Debug, Args, Clone, Copy)]
pub struct LimitArgs {
    /// Deadline of one plugin call, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Memory limit of one plugin instance, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// Largest response, in KiB.
    #[arg(long, default_value_t = 4096)]
    pub max_output_kib: usize,
}

impl From<LimitArgs> for Limits {
    fn from(a: LimitArgs) -> Self {
        Limits {
            timeout: Duration::from_millis(a.timeout_ms),
            memory_bytes: a.memory_mib << 20,
            response_bytes: a.max_output_kib << 10,
        }
    }
}

/// Runs `trellis render`, printing the result.
pub fn run_render(args: RenderArgs) -> Result<(), crate::render::RenderError> {
    let input = RenderInput {
        plugin: args.plugin,
        parent: args.parent,
        observed: args.observed,
        related: args.related,
        config: args.config,
        namespace: args.namespace,
        limits: args.limits.into(),
        admission: args.admission.map(|op| match op {
            AdmissionOperation::Create => crate::runtime::Operation::Create,
            AdmissionOperation::Update => crate::runtime::Operation::Update,
        }),
        old: args.old,
        module_cache_dir: module_cache_dir(args.module_cache),
    };
    print!("{}", render(&input)?);
    Ok(())
}

/// One of the registration CRDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrdKind {
    /// `ClusterReconcilerPlugin` (cluster-scoped, platform admins).
    Cluster,
    /// `ReconcilerPlugin` (namespaced, tenants).
    Tenant,
}
