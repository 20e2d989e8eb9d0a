//! [`TestEnv`]: etcd + kube-apiserver + kube-controller-manager (+ kwok) on
//! loopback ports, in the manner of controller-runtime's envtest.
//!
//! `start` makes a directory (a temp dir unless told otherwise), certificates
//! and an admin kubeconfig in it, starts each component with its log in
//! `DIR/NAME.log`, and waits for it to be ready: etcd's client port accepts
//! connections, the apiserver's `/readyz` says ok, the controller manager's
//! `/healthz` says ok, kwok's fake Node is Ready. Dropping the env stops the
//! components (newest first) and removes the directory; if the process dies
//! instead, the wrappers of [`crate::process`] do the same.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::assets::{Assets, AssetsError};
use crate::certs::{CertError, Certs};
use crate::process::{Janitor, Process, ProcessError, free_port};

/// Keep the environment's directory (logs, etcd data) after it stops.
pub const KEEP_ENV: &str = "TRELLIS_KEEP_TESTENV";

/// How many log lines an error shows.
const LOG_TAIL_LINES: usize = 40;

/// Errors starting a control plane.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A binary is missing.
    #[error(transparent)]
    Assets(#[from] AssetsError),
    /// Certificates could not be made.
    #[error(transparent)]
    Certs(#[from] CertError),
    /// A process could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// File system trouble in the env's directory.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The admin kubeconfig did not load.
    #[error("cannot load the admin kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A step of the setup failed at the API (e.g. creating the fake Node).
    #[error("cannot {what}: {message}")]
    Setup {
        /// What was being done.
        what: String,
        /// The cause.
        message: String,
    },
    /// A component exited while starting.
    #[error("{component} exited ({status}) while starting; last lines of {log}:\n{tail}")]
    Exited {
        /// The component.
        component: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A component did not become ready in time.
    #[error("{component} not ready after {timeout:?} (last check: {last}); last lines of {log}:\n{tail}")]
    NotReady {
        /// The component.
        component: String,
        /// How long we waited.
        timeout: Duration,
        /// The last readiness check's result.
        last: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
}

impl EnvError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    fn port_clash(&self) -> bool {
        match self {
            Self::Exited { tail, .. } | Self::NotReady { tail, .. } => tail.contains("address already in use"),
            _ => false,
        }
    }
}

/// Configures a [`TestEnv`]. Get one with [`TestEnv::builder`].
#[derive(Debug, Clone)]
pub struct TestEnvBuilder {
    pub(crate) controller_manager: bool,
    pub(crate) kwok: bool,
    dir: Option<PathBuf>,
    keep_dir: bool,
    apiserver_args: Vec<String>,
    controller_manager_args: Vec<String>,
    start_timeout: Duration,
    assets: Option<Assets>,
}

impl Default for TestEnvBuilder {
    fn default() -> Self {
        Self {
            controller_manager: true,
            kwok: false,
            dir: None,
            keep_dir: std::env::var(KEEP_ENV).is_ok_and(|v| v == "1"),
            apiserver_args: Vec::new(),
            controller_manager_args: Vec::new(),
            start_timeout: Duration::from_secs(60),
            assets: None,
        }
    }
}

impl TestEnvBuilder {
    /// Run kube-controller-manager (default: yes). It does garbage
    /// collection, Deployment -> ReplicaSet -> Pod, namespace deletion, ...
    pub fn controller_manager(mut self, yes: bool) -> Self {
        self.controller_manager = yes;
        self
    }

    /// Run kwok with one fake Node (default: no), so that pods get scheduled
    /// and become Running without a kubelet. Needs `tests/control-plane
    /// build --with-kwok`.
    pub fn kwok(mut self, yes: bool) -> Self {
        self.kwok = yes;
        self
    }

    /// Use this directory (created if missing) instead of a temp dir. It is
    /// still removed when the env stops, unless [`Self::keep_dir`].
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Keep the directory (logs, data) after the env stops. Default: true
    /// when `TRELLIS_KEEP_TESTENV=1`.
    pub fn keep_dir(mut self, keep: bool) -> Self {
        self.keep_dir = keep;
        self
    }

    /// An extra kube-apiserver flag, e.g. `--max-requests-inflight=800`.
    pub fn apiserver_arg(mut self, arg: impl Into<String>) -> Self {
        self.apiserver_args.push(arg.into());
        self
    }

    /// An extra kube-controller-manager flag, e.g. `--kube-api-qps=100`.
    pub fn controller_manager_arg(mut self, arg: impl Into<String>) -> Self {
        self.controller_manager_args.push(arg.into());
        self
    }

    /// How long each component may take to become ready (default 60 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Take binaries from here instead of `TRELLIS_ASSETS`.
    pub fn assets(mut self, assets: Assets) -> Self {
        self.assets = Some(assets);
        self
    }

    /// Starts the control plane and waits until it is ready. Retries twice
    /// on a port clash.
    pub async fn start(self) -> Result<TestEnv, EnvError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_once().await {
                Err(e) if attempt < 3 && e.port_clash() => {
                    tracing::warn!("control plane hit a port clash, retrying: {e}");
                }
                other => return other,
            }
        }
    }

    async fn start_once(&self) -> Result<TestEnv, EnvError> {
        let assets = match &self.assets {
            Some(a) => a.clone(),
            None => Assets::from_env()?,
        };
        let etcd_bin = assets.etcd()?;
        let apiserver_bin = assets.kube_apiserver()?;
        let kcm_bin = if self.controller_manager {
            Some(assets.kube_controller_manager()?)
        } else {
            None
        };
        if self.kwok {
            crate::kwok::check_assets(&assets)?;
        }

        let dir = match &self.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(EnvError::io(format!("create {}", dir.display())))?;
                dir.clone()
            }
            None => tempfile::Builder::new()
                .prefix("trellis-testenv-")
                .tempdir()
                .map_err(EnvError::io("create a temp dir"))?
                .keep(),
        };
        let janitor = Janitor::spawn(&dir, self.keep_dir)?;
        let mut env = TestEnv {
            dir: dir.clone(),
            kubeconfig: dir.join("kubeconfig"),
            server: String::new(),
            config: kube::Config::new(http::Uri::from_static("https://127.0.0.1")),
            processes: Vec::new(),
            janitor,
            certs: None,
            kwok: self.kwok,
        };
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).map_err(EnvError::io("create pki dir"))?;
        let certs = Certs::generate(&pki)?;
        let timeout = self.start_timeout;
        let started = Instant::now();

        // etcd
        let (etcd_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            "--name=default".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        env.processes.push(Process::spawn("etcd", &etcd_bin, &etcd_args, &dir)?);
        let addr = format!("127.0.0.1:{etcd_port}");
        wait_ready(env.processes.last_mut(), timeout, || async {
            tokio::net::TcpStream::connect(&addr)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await?;

        // kube-apiserver
        let port = free_port()?;
        env.server = format!("https://127.0.0.1:{port}");
        write_kubeconfig(&env.kubeconfig, &env.server, &certs)?;
        env.config = load_config(&env.kubeconfig).await?;
        let p = |path: &Path| path.display().to_string();
        let mut args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", dir.join("apiserver").display()),
            format!("--tls-cert-file={}", p(&certs.serving_cert)),
            format!("--tls-private-key-file={}", p(&certs.serving_key)),
            format!("--client-ca-file={}", p(&certs.ca_cert)),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            // Room for thousands of Services (the scale benchmark makes 1,000).
            "--service-cluster-ip-range=10.0.0.0/16".into(),
            format!("--service-account-issuer={}", env.server),
            format!("--service-account-key-file={}", p(&certs.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&certs.sa_key)),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            // As envtest: no token controller dependency for pods.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--profiling=false".into(),
        ];
        args.extend(self.apiserver_args.iter().cloned());
        env.processes
            .push(Process::spawn("kube-apiserver", &apiserver_bin, &args, &dir)?);
        let client = env.client();
        wait_ready(env.processes.last_mut(), timeout, || get_ok(&client, "/readyz")).await?;

        // kube-controller-manager
        if let Some(bin) = kcm_bin {
            let port = free_port()?;
            let kubeconfig = p(&env.kubeconfig);
            let mut args = vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", dir.join("controller-manager").display()),
                format!("--tls-cert-file={}", p(&certs.serving_cert)),
                format!("--tls-private-key-file={}", p(&certs.serving_key)),
                "--controllers=*".into(),
                "--leader-elect=false".into(),
                format!("--service-account-private-key-file={}", p(&certs.sa_key)),
                format!("--root-ca-file={}", p(&certs.ca_cert)),
                "--use-service-account-credentials=false".into(),
                format!("--cluster-signing-cert-file={}", p(&certs.ca_cert)),
                format!("--cluster-signing-key-file={}", p(&certs.ca_key)),
                "--profiling=false".into(),
            ];
            args.extend(self.controller_manager_args.iter().cloned());
            env.processes
                .push(Process::spawn("kube-controller-manager", &bin, &args, &dir)?);
            let kcm = env.component_client(port)?;
            wait_ready(env.processes.last_mut(), timeout, || get_ok(&kcm, "/healthz")).await?;
        }

        // kube-scheduler, kwok and a fake Node
        if self.kwok {
            crate::kwok::start(&mut env, &assets, &certs, timeout).await?;
        }
        env.certs = Some(certs);
        tracing::info!(
            dir = %dir.display(),
            server = %env.server,
            "control plane ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(env)
    }
}

/// A running control plane. Stops (and removes its directory) on drop.
#[derive(Debug)]
pub struct TestEnv {
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    config: kube::Config,
    pub(crate) processes: Vec<Process>,
    janitor: Janitor,
    certs: Option<Certs>,
    kwok: bool,
}

impl TestEnv {
    /// A builder with the defaults: etcd, kube-apiserver,
    /// kube-controller-manager, no kwok, a temp dir.
    pub fn builder() -> TestEnvBuilder {
        TestEnvBuilder::default()
    }

    /// Starts a control plane with the defaults.
    pub async fn start() -> Result<Self, EnvError> {
        Self::builder().start().await
    }

    /// The environment's directory: kubeconfig, `pki/`, logs, etcd data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (user `trellis-admin` in group `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver URL, `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The certificates and keys (CA, serving, admin, service account).
    pub fn certs(&self) -> Option<&Certs> {
        self.certs.as_ref()
    }

    /// Whether kwok (and its fake Node) runs.
    pub fn has_kwok(&self) -> bool {
        self.kwok
    }

    /// A fresh `kube::Config` for the admin identity.
    pub fn config(&self) -> kube::Config {
        self.config.clone()
    }

    /// A fresh admin `kube::Client`. Make one per test (per tokio runtime):
    /// a client's connection pool belongs to the runtime it was made in.
    ///
    /// # Panics
    /// Outside a tokio runtime, or if the TLS setup fails (it did not when
    /// the env started).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("a client from the env's own kubeconfig")
    }

    /// A client that impersonates `user` in `groups` (the admin may
    /// impersonate anyone): to check what RBAC lets a tenant do.
    ///
    /// # Panics
    /// As [`Self::client`].
    pub fn client_as(&self, user: &str, groups: &[&str]) -> kube::Client {
        let mut config = self.config();
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        kube::Client::try_from(config).expect("a client from the env's own kubeconfig")
    }

    /// A configuration that authenticates as the ServiceAccount
    /// `namespace/name` itself, with a token the API issues for it
    /// (TokenRequest, one hour): unlike [`Self::client_as`], what this
    /// identity impersonates is checked against its own RBAC. The
    /// ServiceAccount must exist.
    ///
    /// # Panics
    /// If the API refuses the token request.
    pub async fn service_account_config(&self, namespace: &str, name: &str) -> kube::Config {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(self.client(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let token = accounts
            .create_token_request(name, &Default::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("a token for ServiceAccount {namespace}/{name}: {e}"))
            .status
            .expect("a token request's status")
            .token;
        let mut config = self.config();
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        config
    }

    /// A component's log file (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`, `kwok`).
    pub fn log_path(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{component}.log"))
    }

    /// The last `lines` lines of a component's log.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        crate::process::log_tail(&self.log_path(component), lines)
    }

    /// An admin client for a component's own HTTPS port (its `/healthz`),
    /// which serves the same certificate as the apiserver.
    pub(crate) fn component_client(&self, port: u16) -> Result<kube::Client, EnvError> {
        let mut config = self.config();
        config.cluster_url = format!("https://127.0.0.1:{port}")
            .parse()
            .expect("a loopback URL parses");
        kube::Client::try_from(config).map_err(|e| EnvError::Kubeconfig {
            path: self.kubeconfig.clone(),
            message: e.to_string(),
        })
    }

    /// Stops everything now (same as dropping).
    pub fn stop(self) {}
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            process.stop();
        }
        self.janitor.finish();
    }
}

/// Polls `check` until it succeeds, failing early if the process exits.
pub(crate) async fn wait_ready<F, Fut>(
    process: Option<&mut Process>,
    timeout: Duration,
    mut check: F,
) -> Result<(), EnvError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let process = process.expect("the component was just started");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.exited() {
            return Err(EnvError::Exited {
                component: process.name().to_string(),
                status: status.to_string(),
                log: process.log_path().to_path_buf(),
                tail: process.log_tail(LOG_TAIL_LINES),
            });
        }
        let last = match tokio::time::timeout(Duration::from_secs(5), check()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "check timed out after 5s".to_string(),
        };
        if Instant::now() >= deadline {
            return Err(EnvError::NotReady {
                component: process.name().to_string(),
                timeout,
                last,
                log: process.log_path().to_path_buf(),
                tail: process.log_tail(LOG_TAIL_LINES),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `path`, expecting a 2xx answer.
pub(crate) async fn get_ok(client: &kube::Client, path: &str) -> Result<(), String> {
    let request = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
    client.request_text(request).await.map(drop).map_err(|e| e.to_string())
}

fn write_kubeconfig(path: &Path, server: &str, certs: &Certs) -> Result<(), EnvError> {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let qp = |p: &Path| q(&p.display().to_string());
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: trellis-testenv\n\
         \x20 cluster:\n\
         \x20   server: {server}\n\
         \x20   certificate-authority: {ca}\n\
         users:\n\
         - name: {user}\n\
         \x20 user:\n\
         \x20   client-certificate: {cert}\n\
         \x20   client-key: {key}\n\
         contexts:\n\
         - name: trellis-testenv\n\
         \x20 context:\n\
         \x20   cluster: trellis-testenv\n\
         \x20   user: {user}\n\
         \x20   namespace: default\n\
         current-context: trellis-testenv\n",
        server = q(server),
        ca = qp(&certs.ca_cert),
        user = q(crate::certs::ADMIN_USER),
        cert = qp(&certs.admin_cert),
        key = qp(&certs.admin_key),
    );
    std::fs::write(path, text).map_err(EnvError::io(format!("write {}", path.display())))
}

async fn load_config(path: &Path) -> Result<kube::Config, EnvError> {
    let err = |message: String| EnvError::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))
}
