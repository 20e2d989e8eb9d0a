//! The host image (deploy/image/build, what `make image` runs), built here
//! from this test's own `trellis` binary (stripped) and the bundled plugins,
//! with a real crane (`tests/go-tool build crane`):
//!
//! - pushed to the local registry (TLS, basic auth) and pulled back, its
//!   config names the non-root user 65532 and the entrypoint `trellis run`,
//!   and it holds the binary, the seven bundled plugins and their compiled
//!   forms;
//! - its root filesystem, as pulled back, runs the host as that user
//!   (chroot, as root only) against the test control plane with the image's
//!   own default arguments, and the host loads every bundled plugin from the
//!   pre-warmed cache: seven hits, no compile.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use trellis_testenv::assets::go_tool;
use trellis_testenv::process::free_port;
use trellis_testenv::registry::{REGISTRY_PASSWORD, REGISTRY_USER, Registry};
use trellis_testenv::shared_env;

const BUNDLED: [&str; 7] = [
    "appservice",
    "etcd-cluster",
    "jmx-exporter",
    "msdeploy",
    "mydaemonset",
    "prometheus",
    "redis",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs crane with the registry's credentials and CA; its stdout.
fn crane(registry: &Registry, docker_config: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(go_tool("crane"))
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env("SSL_CERT_FILE", registry.ca_cert())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crane {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The control plane's kubeconfig with its files inlined, for a root
/// filesystem that cannot see them.
fn self_contained_kubeconfig(path: &Path) -> String {
    let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let inline = |map: &mut serde_yaml::Mapping, key: &str| {
        if let Some(file) = map.remove(key) {
            let bytes = std::fs::read(file.as_str().unwrap()).unwrap();
            let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
            map.insert(format!("{key}-data").into(), encoded.into());
        }
    };
    for cluster in config["clusters"].as_sequence_mut().unwrap() {
        inline(cluster["cluster"].as_mapping_mut().unwrap(), "certificate-authority");
    }
    for user in config["users"].as_sequence_mut().unwrap() {
        let user = user["user"].as_mapping_mut().unwrap();
        inline(user, "client-certificate");
        inline(user, "client-key");
    }
    serde_yaml::to_string(&config).unwrap()
}

fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test]
async fn the_image_is_pushed_pulled_back_and_serves_from_its_warm_cache() {
    let out = tempfile::tempdir().unwrap();
    let built = Command::new(repo().join("deploy/image/build"))
        .args(["--binary", env!("CARGO_BIN_EXE_trellis"), "--strip", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let summary: Value = serde_json::from_slice(&std::fs::read(out.path().join("image.json")).unwrap()).unwrap();
    eprintln!("image: {summary}");
    assert!(out.path().join("trellis.tar").is_file());

    let registry = Registry::start().await.unwrap();
    let docker_config = out.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"),
    );
    std::fs::write(
        docker_config.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host()),
    )
    .unwrap();
    let reference = format!("{}/platform/trellis:test", registry.host());
    let layout = out.path().join("oci").display().to_string();
    crane(&registry, &docker_config, &["push", &layout, &reference]);

    // Pulled back from the registry.
    let digest = String::from_utf8(crane(&registry, &docker_config, &["digest", &reference])).unwrap();
    assert_eq!(digest.trim(), summary["digest"].as_str().unwrap());
    let manifest: Value = serde_json::from_slice(&crane(&registry, &docker_config, &["manifest", &reference])).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 4, "{manifest}");
    let config: Value = serde_json::from_slice(&crane(&registry, &docker_config, &["config", &reference])).unwrap();
    let container = &config["config"];
    assert_eq!(container["User"], "65532:65532", "{config}");
    assert_eq!(
        container["Entrypoint"],
        serde_json::json!(["/usr/local/bin/trellis", "run"]),
        "{config}"
    );
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");

    let rootfs = out.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let exported = out.path().join("rootfs.tar").display().to_string();
    crane(&registry, &docker_config, &["export", &reference, &exported]);
    let untarred = Command::new("tar")
        .args(["-xf", &exported, "-C"])
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(untarred.success());
    assert!(rootfs.join("usr/local/bin/trellis").is_file());
    for plugin in BUNDLED {
        assert!(
            rootfs.join(format!("usr/lib/trellis/plugins/{plugin}.wasm")).is_file(),
            "{plugin}"
        );
    }
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());

    // /proc/self belongs to whoever this process runs as.
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) != 0 {
        eprintln!("not root: the image's root filesystem is not run (chroot needs root)");
        return;
    }
    run_in_root_filesystem(&rootfs, container).await;
}

/// Runs the image's entrypoint and default arguments in its root filesystem
/// as its user, against the test control plane, and waits until it has
/// loaded every bundled plugin from the pre-warmed cache.
async fn run_in_root_filesystem(rootfs: &Path, container: &Value) {
    let env = shared_env();
    std::fs::write(
        rootfs.join("tmp/kubeconfig"),
        self_contained_kubeconfig(env.kubeconfig_path()),
    )
    .unwrap();
    // The image's own cache folder, the user's (a Deployment mounts an
    // emptyDir there).
    let cache = rootfs.join("var/cache/trellis");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&cache).unwrap()),
        65532
    );
    std::os::unix::fs::chown(rootfs.join("tmp/kubeconfig"), Some(65532), Some(65532)).unwrap();

    let port = free_port().unwrap();
    let log_path = rootfs.with_file_name("host.log");
    let mut args: Vec<String> = container["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .chain(container["Cmd"].as_array().unwrap())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    for arg in &mut args {
        if arg.starts_with("--metrics-addr=") {
            *arg = format!("--metrics-addr=127.0.0.1:{port}");
        }
    }
    let mut host = Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(rootfs)
        .args(&args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/home/trellis")
        .env("KUBECONFIG", "/tmp/kubeconfig")
        .env("TRELLIS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut last = String::new();
    for _ in 0..120 {
        if let Some(status) = host.try_wait().unwrap() {
            panic!("the host in the image exited ({status}):\n{}", log());
        }
        if let Ok(text) = http_get(port, "/metrics").await {
            let hits = metric(&text, r#"trellis_module_cache_compiles{result="hit"}"#);
            let misses = metric(&text, r#"trellis_module_cache_compiles{result="miss"}"#);
            if misses.is_some_and(|m| m > 0) {
                host.kill().unwrap();
                panic!(
                    "the host compiled {misses:?} module(s) despite the warm cache:\n{}",
                    log()
                );
            }
            if hits == Some(BUNDLED.len() as i64) {
                assert_eq!(misses, Some(0), "compiled despite the warm cache");
                host.kill().unwrap();
                host.wait().unwrap();
                // Seeded: the cache the Deployment mounts holds them now.
                let entries = walk_files(&cache);
                assert!(entries >= BUNDLED.len(), "{entries} cache files");
                return;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    host.kill().unwrap();
    panic!(
        "the host in the image did not load the bundled plugins from its cache; metrics:\n{last}\nlog:\n{}",
        log()
    );
}

/// The text of an HTTP/1.0 GET of `path` on 127.0.0.1:`port`.
async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| match e.file_type().unwrap().is_dir() {
            true => walk_files(&e.path()),
            false => 1,
        })
        .sum()
}
