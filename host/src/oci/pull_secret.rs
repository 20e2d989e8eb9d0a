//! Registry credentials from an image pull Secret, as Kubernetes stores
//! them: `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, a Docker
//! `config.json` with `auths`) or the older `kubernetes.io/dockercfg`
//! (`.dockercfg`, the `auths` map alone). An entry is found by the
//! registry's host: a key may carry a scheme and a path
//! (`https://host/v1/`), and Docker Hub answers to several names.

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

/// The user and password for `registry` (a reference's host, with its
/// port if it has one) in a Secret of `secret_type` with `data`.
pub fn credentials_for(
    secret_type: &str,
    data: &BTreeMap<String, Vec<u8>>,
    registry: &str,
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
    let wanted = canonical_host(registry);
    let entry = auths
        .iter()
        .find(|(key, _)| canonical_host(key) == wanted)
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

/// A config key or a reference's registry reduced to its host (and port):
/// no scheme, no path, Docker Hub's names as one.
fn canonical_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
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
            credentials_for(DOCKER_CONFIG_JSON, &secret, "127.0.0.1:5000").unwrap(),
            ("pusher".to_owned(), "pa:ss".to_owned())
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &secret, "other.example").unwrap().0,
            "x"
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &secret, "127.0.0.1:5001"),
            Err(PullSecretError::NoEntry("127.0.0.1:5001".into()))
        );
    }

    #[test]
    fn username_and_password_fields_and_the_old_dockercfg_are_read() {
        let secret = data(
            ".dockercfg",
            serde_json::json!({"https://index.docker.io/v1/": {"username": "u", "password": "p"}}),
        );
        assert_eq!(
            credentials_for(DOCKER_CFG, &secret, "docker.io").unwrap(),
            ("u".to_owned(), "p".to_owned())
        );
    }

    #[test]
    fn what_is_not_a_pull_secret_is_named() {
        let opaque = data("password", serde_json::json!("x"));
        assert_eq!(
            credentials_for("Opaque", &opaque, "r.example"),
            Err(PullSecretError::WrongType("Opaque".into()))
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &opaque, "r.example"),
            Err(PullSecretError::MissingKey(".dockerconfigjson"))
        );
        let broken: BTreeMap<String, Vec<u8>> = [(".dockerconfigjson".to_owned(), b"{".to_vec())].into();
        assert!(matches!(
            credentials_for(DOCKER_CONFIG_JSON, &broken, "r.example"),
            Err(PullSecretError::BadConfig { .. })
        ));
        // A value in the wrong place is not quoted back: it may be a password.
        let misplaced = data(
            ".dockerconfigjson",
            serde_json::json!({"auths": {"r.example": "cGFzc3dvcmQ="}}),
        );
        let message = credentials_for(DOCKER_CONFIG_JSON, &misplaced, "r.example")
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
            credentials_for(DOCKER_CONFIG_JSON, &bad_auth, "r.example"),
            Err(PullSecretError::BadAuth("r.example".into()))
        );
        let no_colon = data(
            ".dockerconfigjson",
            serde_json::json!({"auths": {"r.example": {"auth": b64("justauser")}}}),
        );
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &no_colon, "r.example"),
            Err(PullSecretError::BadAuth("r.example".into()))
        );
        let empty = data(".dockerconfigjson", serde_json::json!({"auths": {"r.example": {}}}));
        assert_eq!(
            credentials_for(DOCKER_CONFIG_JSON, &empty, "r.example"),
            Err(PullSecretError::EmptyEntry("r.example".into()))
        );
    }
}
