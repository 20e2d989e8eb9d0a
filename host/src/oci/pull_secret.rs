//! Registry credentials from an image pull Secret, as Kubernetes stores
//! them: `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, a Docker
//! `config.json` with `auths`) or the older `kubernetes.io/dockercfg`
//! (`.dockercfg`, the `auths` map alone). An entry is found much as the
//! kubelet finds one: a key names a host (and port) and may narrow it to a
//! repository path (`host/team-a` serves `host/team-a/plugin`, not
//! `host/team-b/plugin`, and, unlike the kubelet's string prefix, not
//! `host/team-ab/plugin`), the most specific key wins, a scheme and Docker
//! Hub's legacy endpoint path (`https://index.docker.io/v1/`) are ignored,
//! and Docker Hub answers to several names.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

/// The Secret type of a Docker `config.json`.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The older Secret type of a bare `auths` map.
pub const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

/// Why a Secret gives no credentials for a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullSecretError {
    /// Not a pull Secret.
    #[error("the Secret is of type {0:?}, not {DOCKER_CONFIG_JSON} or {DOCKER_CFG}")]
    WrongType(String),
    /// The key its type needs is missing.
    #[error("the Secret has no {0} key")]
    MissingKey(&'static str),
    /// Its content is not a Docker config.
    #[error("the Secret's {key} is not a Docker config: {reason}")]
    BadConfig {
        /// The key.
        key: &'static str,
        /// The parser's words.
        reason: String,
    },
    /// No entry is for this registry.
    #[error("the Secret has no credentials for registry {0}")]
    NoEntry(String),
    /// The entry's `auth` is not base64 of `user:password`.
    #[error("the Secret's entry for {0} has an auth field that is not base64 of user:password")]
    BadAuth(String),
    /// The entry has neither `auth` nor a user and password.
    #[error("the Secret's entry for {0} has neither auth nor username and password")]
    EmptyEntry(String),
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The user and password for `repository` of `registry` (a reference's
/// host, with its port if it has one) in a Secret of `secret_type` with
/// `data`.
pub fn credentials_for(
    secret_type: &str,
    data: &BTreeMap<String, Vec<u8>>,
    registry: &str,
    repository: &str,
) -> Result<(String, String), PullSecretError> {
    let auths = match secret_type {
        DOCKER_CONFIG_JSON => {
            let key = ".dockerconfigjson";
            let raw = data.get(key).ok_or(PullSecretError::MissingKey(key))?;
            serde_json::from_slice::<DockerConfig>(raw)
                .map_err(|e| PullSecretError::BadConfig {
                    key,
                    reason: json_error(&e),
                })?
                .auths
        }
        DOCKER_CFG => {
            let key = ".dockercfg";
            let raw = data.get(key).ok_or(PullSecretError::MissingKey(key))?;
            serde_json::from_slice::<BTreeMap<String, Entry>>(raw).map_err(|e| PullSecretError::BadConfig {
                key,
                reason: json_error(&e),
            })?
        }
        other => return Err(PullSecretError::WrongType(other.to_owned())),
    };
    let host = canonical_host(registry);
    let repository: Vec<&str> = repository.split('/').filter(|s| !s.is_empty()).collect();
    let entry = auths
        .iter()
        .filter_map(|(key, entry)| {
            let (key_host, path) = key_scope(key);
            let serves = key_host == host && repository.starts_with(&path);
            serves.then_some((path.len(), entry))
        })
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, entry)| entry)
        .ok_or_else(|| PullSecretError::NoEntry(registry.to_owned()))?;
    if let (Some(user), Some(password)) = (&entry.username, &entry.password)
        && !user.is_empty()
    {
        return Ok((user.clone(), password.clone()));
    }
    let auth = entry
        .auth
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| PullSecretError::EmptyEntry(registry.to_owned()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| PullSecretError::BadAuth(registry.to_owned()))?;
    match decoded.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), password.to_owned())),
        _ => Err(PullSecretError::BadAuth(registry.to_owned())),
    }
}

/// Where and what kind of JSON error, without its text: serde_json quotes
/// the values it meets, and those are credentials here.
fn json_error(e: &serde_json::Error) -> String {
    format!("{:?} error at line {}, column {}", e.classify(), e.line(), e.column())
}

/// A config key as the host (and port) and the repository path it serves.
/// A key with a scheme may end in a registry API's version (`/v1/`,
/// `/v2/`, as `docker login` writes Docker Hub's): that is an endpoint,
/// not a repository path.
fn key_scope(key: &str) -> (String, Vec<&str>) {
    let without_scheme = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://"));
    let had_scheme = without_scheme.is_some();
    let mut parts = without_scheme.unwrap_or(key).split('/').filter(|s| !s.is_empty());
    let host = canonical_host(parts.next().unwrap_or_default());
    let mut path: Vec<&str> = parts.collect();
    if had_scheme && matches!(path.as_slice(), ["v1"] | ["v2"]) {
        path.clear();
    }
    (host, path)
}

/// A host (and port) as compared: lower case, Docker Hub's names as one.
fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(key: &str, json: serde_json::Value) -> BTreeMap<String, Vec<u8>> {
        [(key.to_owned(), serde_json::to_vec(&json).unwrap())].into()
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn a_docker_config_json_entry_is_found_by_host_and_port() {
        let secret = data(
            ".dockerconfigjson",
            serde_json::json!({"auths": {
                "https://other.example/v1/": {"auth": b64("x:y")},
                "127.0.0.1:5000": {"auth": b64("pusher:pa:ss")},
            }}),
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &secret, "127.0.0.1:5000", "plugins/msdeploy").unwrap(),
            ("pusher".to_owned(), "pa:ss".to_owned())
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &secret, "other.example", "p")
                .unwrap()
                .0,
            "x"
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &secret, "127.0.0.1:5001", "plugins/msdeploy"),
            Err(PullSecretError::NoEntry("127.0.0.1:5001".into()))
        );
    }

    #[test]
    fn a_key_with_a_path_serves_only_repositories_under_it_and_the_most_specific_wins() {
        let secret = data(
            ".dockerconfigjson",
            serde_json::json!({"auths": {
                "r.example": {"auth": b64("any:1")},
                "r.example/team-a": {"auth": b64("team-a:2")},
                "https://r.example/team-a/special/": {"auth": b64("special:3")},
                "q.example/team-b": {"auth": b64("team-b:4")},
            }}),
        );
        let user = |registry: &str, repository: &str| {
            credentials_for(DOCKER_CONFIG_JSON, &secret, registry, repository).map(|(user, _)| user)
        };
        assert_eq!(user("r.example", "team-a/plugin").unwrap(), "team-a");
        assert_eq!(user("r.example", "team-a/special/plugin").unwrap(), "special");
        assert_eq!(user("r.example", "team-ab/plugin").unwrap(), "any");
        assert_eq!(user("r.example", "plugin").unwrap(), "any");
        assert_eq!(user("q.example", "team-b/plugin").unwrap(), "team-b");
        assert_eq!(
            user("q.example", "team-c/plugin"),
            Err(PullSecretError::NoEntry("q.example".into()))
        );
    }

    #[test]
    fn username_and_password_fields_and_the_old_dockercfg_are_read() {
        let secret = data(
            ".dockercfg",
            serde_json::json!({"https://index.docker.io/v1/": {"username": "u", "password": "p"}}),
        );
        assert_eq!(
            credentials_for(DOCKER_CFG, &secret, "docker.io", "library/p").unwrap(),
            ("u".to_owned(), "p".to_owned())
        );
    }

    #[test]
    fn what_is_not_a_pull_secret_is_named() {
        let opaque = data("password", serde_json::json!("x"));
        assert_eq!(
            credentials_for("Opaque", &opaque, "r.example", "p"),
            Err(PullSecretError::WrongType("Opaque".into()))
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &opaque, "r.example", "p"),
            Err(PullSecretError::MissingKey(".dockerconfigjson"))
        );
        let broken: BTreeMap<String, Vec<u8>> = [(".dockerconfigjson".to_owned(), b"{".to_vec())].into();
        assert!(matches!(
            credentials_for(DOCKER_CONFIG_JSON, &broken, "r.example", "p"),
            Err(PullSecretError::BadConfig { .. })
        ));
        // A value in the wrong place is not quoted back: it may be a password.
        let misplaced = data(
            ".dockerconfigjson",
            serde_json::json!({"auths": {"r.example": "cGFzc3dvcmQ="}}),
        );
        let message = credentials_for(DOCKER_CONFIG_JSON, &misplaced, "r.example", "p")
            .unwrap_err()
            .to_string();
        assert!(
            !message.contains("cGFzc3dvcmQ") && message.contains("line 1"),
            "{message}"
        );
        let bad_auth = data(
            ".dockerconfigjson",
            serde_json::json!({"auths": {"r.example": {"auth": "%%%"}}}),
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &bad_auth, "r.example", "p"),
            Err(PullSecretError::BadAuth("r.example".into()))
        );
        let no_colon = data(
            ".dockerconfigjson",
            serde_json::json!({"auths": {"r.example": {"auth": b64("justauser")}}}),
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &no_colon, "r.example", "p"),
            Err(PullSecretError::BadAuth("r.example".into()))
        );
        let empty = data(".dockerconfigjson", serde_json::json!({"auths": {"r.example": {}}}));
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &empty, "r.example", "p"),
            Err(PullSecretError::EmptyEntry("r.example".into()))
        );
    }
}
