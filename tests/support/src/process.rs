//! Child processes that cannot outlive their owner.
//!
//! Each component (etcd, kube-apiserver, ...) runs under a small bash wrapper
//! whose stdin is a pipe from this process. The wrapper starts the component
//! and waits for either the component to exit or its stdin to reach EOF. EOF
//! comes when the owner drops the pipe ([`Process::stop`], `Drop`) or when the
//! owner process dies for any reason, even `SIGKILL`: the kernel closes its
//! end. The wrapper then sends `SIGTERM`, waits up to 3 s, and sends
//! `SIGKILL`. No polling of the parent pid and no unsafe code are needed, and a
//! control plane kept in a `static` (never dropped) still dies with the test
//! binary.
//!
//! A [`Janitor`] works the same way for the environment's directory: when its
//! pipe closes it waits for the components recorded in `*.pid` files to be
//! gone, then removes the directory.

use std::fs::File;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `"$@"` (after the pid-file argument) and stops it when stdin closes.
const WRAPPER: &str = r#"
set -u
pidfile=$1; shift
exec 3<&0 </dev/null
"$@" 3<&- &
child=$!
echo "$child" >"$pidfile"
cat <&3 >/dev/null &
watch=$!
exec 3<&-
stop() {
    kill -TERM "$child" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$child" 2>/dev/null
    wait "$child" 2>/dev/null
    kill "$watch" 2>/dev/null
}
trap 'stop; exit 143' TERM INT HUP
# Poll rather than `wait -n`: that misses a child that exited before it was called.
while kill -0 "$child" 2>/dev/null && kill -0 "$watch" 2>/dev/null; do sleep 0.2; done
if kill -0 "$child" 2>/dev/null; then
    echo "[trellis-testenv] owner gone or stopping: stopping $0" >&2
    stop
    exit 0
fi
wait "$child"
rc=$?
kill "$watch" 2>/dev/null
echo "[trellis-testenv] $0 exited with status $rc" >&2
exit "$rc"
"#;

/// Waits for stdin EOF, then for the pids in `$1/*.pid` to be gone (at most
/// 15 s), then removes `$1` unless `$2` is 1.
const JANITOR: &str = r#"
set -u
cat >/dev/null
for _ in $(seq 1 150); do
    alive=0
    for f in "$1"/*.pid; do
        [ -e "$f" ] || continue
        p=$(cat "$f" 2>/dev/null) || continue
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
done
[ "$2" = 1 ] || rm -rf "$1"
"#;

/// How long [`Process::stop`] waits for the wrapper before killing outright.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors running processes.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be created.
    #[error("cannot create log file {path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// bash could not be started.
    #[error("cannot start {name} (via bash): {source}")]
    Spawn {
        /// The component.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No free port.
    #[error("cannot find a free loopback port: {0}")]
    Port(#[source] std::io::Error),
}

/// A component running under the wrapper. Stopped on drop.
#[derive(Debug)]
pub struct Process {
    name: String,
    wrapper: Child,
    guard: Option<ChildStdin>,
    log: PathBuf,
    pid_file: PathBuf,
}

impl Process {
    /// Starts `program args` with stdout and stderr appended to
    /// `dir/NAME.log`, recording the component's pid in `dir/NAME.pid`.
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> Result<Self, ProcessError> {
        let log = dir.join(format!("{name}.log"));
        let pid_file = dir.join(format!("{name}.pid"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| ProcessError::Log {
                path: log.clone(),
                source,
            })?;
        let err = out.try_clone().map_err(|source| ProcessError::Log {
            path: log.clone(),
            source,
        })?;
        let mut wrapper = Command::new("bash")
            .arg("-c")
            .arg(WRAPPER)
            .arg(name)
            .arg(&pid_file)
            .arg(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                name: name.to_string(),
                source,
            })?;
        let guard = wrapper.stdin.take();
        Ok(Self {
            name: name.to_string(),
            wrapper,
            guard,
            log,
            pid_file,
        })
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The component's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The wrapper's exit status, if it has exited (i.e. the component died).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.wrapper.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the component's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Stops the component and waits for it (at most about 10 s).
    pub fn stop(&mut self) {
        self.guard = None;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The wrapper did not finish: kill the component and the wrapper.
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill")
                .args(["-KILL", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes a directory once its owner is gone and its components have exited.
#[derive(Debug)]
pub struct Janitor {
    child: Child,
    guard: Option<ChildStdin>,
}

impl Janitor {
    /// Watches `dir`; with `keep`, leaves it in place (for debugging).
    pub fn spawn(dir: &Path, keep: bool) -> Result<Self, ProcessError> {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(JANITOR)
            .arg("trellis-testenv-janitor")
            .arg(dir)
            .arg(if keep { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                name: "janitor".into(),
                source,
            })?;
        let guard = child.stdin.take();
        Ok(Self { child, guard })
    }

    /// Lets the janitor do its work now and waits for it.
    pub fn finish(&mut self) {
        self.guard = None;
        let _ = self.child.wait();
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A free TCP port on 127.0.0.1 (free now; another process may take it later).
pub fn free_port() -> Result<u16, ProcessError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(ProcessError::Port)?;
    let port = listener.local_addr().map_err(ProcessError::Port)?.port();
    Ok(port)
}

/// The last `lines` lines of a file (empty if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_kills_the_component_and_janitor_removes_the_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("env");
        std::fs::create_dir(&dir).unwrap();
        let mut janitor = Janitor::spawn(&dir, false).unwrap();
        let mut p = Process::spawn("sleeper", Path::new("sleep"), &["300".into()], &dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            if let Ok(pid) = std::fs::read_to_string(dir.join("sleeper.pid"))
                && !pid.trim().is_empty()
            {
                break pid.trim().to_string();
            }
            assert!(Instant::now() < deadline, "no pid file");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(p.exited().is_none());
        let started = Instant::now();
        p.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
        let alive = Command::new("kill").args(["-0", &pid]).stderr(Stdio::null()).status();
        assert!(!alive.unwrap().success(), "component {pid} still alive");
        assert!(p.log_tail(5).contains("stopping sleeper"), "{}", p.log_tail(5));
        janitor.finish();
        assert!(!dir.exists());
    }

    #[test]
    fn exit_of_the_component_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Process::spawn(
            "failing",
            Path::new("sh"),
            &["-c".into(), "echo boom; exit 3".into()],
            dir.path(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = p.exited() {
                break status;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(3));
        assert!(p.log_tail(10).contains("boom"));
    }
}
