//! `control-plane up|down|status`: a local control plane for humans and `make run`.
//!
//! `up` starts `control-plane serve` in the background (its own process
//! group, so it outlives the shell command), waits until it is ready and
//! prints `export KUBECONFIG=...` as the last line of stdout. `down` sends it
//! SIGTERM, which stops every component and removes the state directory.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use std::os::unix::process::CommandExt as _;
use trellis_testenv::TestEnv;

/// How long `up` waits for the control plane (cold caches, loaded machine).
const UP_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Parser)]
#[command(about = "A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for Trellis")]
struct Cli {
    /// Where the running control plane keeps its state.
    #[arg(
        long,
        env = "TRELLIS_STATE",
        default_value = "/tmp/trellis-control-plane",
        global = true
    )]
    state: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start in the background; the last line printed is `export KUBECONFIG=...`.
    Up {
        /// Also run kube-scheduler and kwok with a fake Node, so pods become Running.
        #[arg(long, env = "TRELLIS_WITH_KWOK", value_parser = clap::builder::FalseyValueParser::new())]
        kwok: bool,
    },
    /// Stop it and remove its state.
    Down,
    /// Exit 0 and print the kubeconfig if it is up, exit 1 if not.
    Status,
    /// Run in the foreground until SIGTERM/Ctrl-C (what `up` starts).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        kwok: bool,
    },
}

/// Files in the state directory.
struct State {
    dir: PathBuf,
}

impl State {
    fn pid_file(&self) -> PathBuf {
        self.dir.join("serve.pid")
    }
    fn log_file(&self) -> PathBuf {
        self.dir.join("serve.log")
    }
    fn ready_file(&self) -> PathBuf {
        self.dir.join("ready")
    }
    fn env_dir(&self) -> PathBuf {
        self.dir.join("env")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.env_dir().join("kubeconfig")
    }
    fn pid(&self) -> Option<String> {
        let pid = std::fs::read_to_string(self.pid_file()).ok()?;
        let pid = pid.trim().to_string();
        is_alive(&pid).then_some(pid)
    }
    fn is_up(&self) -> bool {
        self.pid().is_some() && self.ready_file().is_file()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let state = State { dir: cli.state };
    let result = match cli.command {
        Cmd::Up { kwok } => up(&state, kwok),
        Cmd::Down => down(&state),
        Cmd::Status => status(&state),
        Cmd::Serve { kwok } => serve(&state, kwok),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("control-plane: {message}");
            ExitCode::FAILURE
        }
    }
}

fn up(state: &State, kwok: bool) -> Result<ExitCode, String> {
    if state.is_up() {
        eprintln!("control plane already up (state in {})", state.dir.display());
        println!("export KUBECONFIG={}", state.kubeconfig().display());
        return Ok(ExitCode::SUCCESS);
    }
    if state.pid().is_some() {
        return Err(format!(
            "a control plane is starting or stuck in {}; run `tests/control-plane down` first",
            state.dir.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&state.dir);
    std::fs::create_dir_all(&state.dir).map_err(|e| format!("cannot create {}: {e}", state.dir.display()))?;
    let log = std::fs::File::create(state.log_file()).map_err(|e| format!("cannot create the log: {e}"))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(me);
    command.arg("--state").arg(&state.dir).arg("serve");
    if kwok {
        command.arg("--kwok");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the control plane: {e}"))?;
    std::fs::write(state.pid_file(), child.id().to_string()).map_err(|e| e.to_string())?;
    eprintln!("starting the control plane (log: {})", state.log_file().display());
    let started = Instant::now();
    loop {
        if state.ready_file().is_file() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(state.log_file()).unwrap_or_default();
            return Err(format!("the control plane exited ({status}) while starting:\n{log}"));
        }
        if started.elapsed() > UP_TIMEOUT {
            return Err(format!(
                "not ready after {UP_TIMEOUT:?}; see {} (stop it with `tests/control-plane down`)",
                state.log_file().display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "control plane up in {:.1}s; stop it with `tests/control-plane down`",
        started.elapsed().as_secs_f64()
    );
    println!("export KUBECONFIG={}", state.kubeconfig().display());
    Ok(ExitCode::SUCCESS)
}

fn down(state: &State) -> Result<ExitCode, String> {
    let Some(pid) = state.pid() else {
        let _ = std::fs::remove_dir_all(&state.dir);
        eprintln!("no control plane running (state {})", state.dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_alive(&pid) {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_dir_all(&state.dir).map_err(|e| format!("cannot remove {}: {e}", state.dir.display()))?;
    eprintln!("control plane stopped");
    Ok(ExitCode::SUCCESS)
}

fn status(state: &State) -> Result<ExitCode, String> {
    if state.is_up() {
        println!("up: export KUBECONFIG={}", state.kubeconfig().display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("down");
        Ok(ExitCode::FAILURE)
    }
}

fn serve(state: &State, kwok: bool) -> Result<ExitCode, String> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let env = TestEnv::builder()
            .dir(state.env_dir())
            .kwok(kwok)
            .start()
            .await
            .map_err(|e| e.to_string())?;
        write_ready(&state.ready_file(), env.kubeconfig_path())?;
        tracing::info!(kubeconfig = %env.kubeconfig_path().display(), "control plane ready");
        wait_for_stop_signal().await;
        tracing::info!("stopping the control plane");
        let _ = std::fs::remove_file(state.ready_file());
        drop(env);
        Ok(ExitCode::SUCCESS)
    })
}

fn write_ready(path: &Path, kubeconfig: &Path) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, kubeconfig.display().to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut hangup = signal(SignalKind::hangup()).expect("a SIGHUP handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = hangup.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn is_alive(pid: &str) -> bool {
    !pid.is_empty()
        && Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}
