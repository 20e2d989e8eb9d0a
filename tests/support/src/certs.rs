//! Certificates and keys of a test control plane, made with the `openssl` CLI.
//!
//! One CA signs the apiserver's serving certificate (SANs `127.0.0.1` and
//! `localhost`) and the admin client certificate (`CN=trellis-admin`,
//! `O=system:masters`); the apiserver trusts it as `--client-ca-file`. A
//! separate EC key pair signs and verifies service-account tokens. All keys
//! are ECDSA P-256: quick to generate, accepted by Go and by rustls.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The admin identity's user name.
pub const ADMIN_USER: &str = "trellis-admin";
/// The admin identity's group: bound to `cluster-admin` by the bootstrap RBAC policy.
pub const ADMIN_GROUP: &str = "system:masters";

/// Errors making certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// `openssl` could not be run.
    #[error("cannot run `openssl` (needed to make the test control plane's certificates): {0}")]
    Spawn(#[source] std::io::Error),
    /// `openssl` failed.
    #[error("`openssl {args}` failed: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Writing an extension file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Paths of the PEM files of one control plane.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA certificate (client CA of the apiserver, root of its serving cert).
    pub ca_cert: PathBuf,
    /// The CA key (also given to kube-controller-manager to sign CSRs).
    pub ca_key: PathBuf,
    /// The serving certificate of the apiserver and the controller manager.
    pub serving_cert: PathBuf,
    /// Its key.
    pub serving_key: PathBuf,
    /// The admin client certificate.
    pub admin_cert: PathBuf,
    /// Its key.
    pub admin_key: PathBuf,
    /// The service-account signing key (private).
    pub sa_key: PathBuf,
    /// The service-account verification key (public).
    pub sa_pub: PathBuf,
}

impl Certs {
    /// Generates everything into `dir` (which must exist).
    pub fn generate(dir: &Path) -> Result<Self, CertError> {
        let p = |name: &str| dir.join(name);
        let certs = Self {
            ca_cert: p("ca.crt"),
            ca_key: p("ca.key"),
            serving_cert: p("serving.crt"),
            serving_key: p("serving.key"),
            admin_cert: p("admin.crt"),
            admin_key: p("admin.key"),
            sa_key: p("sa.key"),
            sa_pub: p("sa.pub"),
        };
        for key in [&certs.ca_key, &certs.serving_key, &certs.admin_key, &certs.sa_key] {
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                s(key),
            ])?;
        }
        openssl(&["pkey", "-in", s(&certs.sa_key), "-pubout", "-out", s(&certs.sa_pub)])?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            s(&certs.ca_key),
            "-subj",
            "/CN=trellis-testenv-ca",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out",
            s(&certs.ca_cert),
        ])?;
        certs.sign(
            dir,
            "serving",
            "/CN=127.0.0.1",
            "keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost\n",
            &certs.serving_key,
            &certs.serving_cert,
        )?;
        certs.sign(
            dir,
            "admin",
            &format!("/O={ADMIN_GROUP}/CN={ADMIN_USER}"),
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
            &certs.admin_key,
            &certs.admin_cert,
        )?;
        Ok(certs)
    }

    fn sign(
        &self,
        dir: &Path,
        name: &str,
        subject: &str,
        extensions: &str,
        key: &Path,
        cert: &Path,
    ) -> Result<(), CertError> {
        let csr = dir.join(format!("{name}.csr"));
        let ext = dir.join(format!("{name}.ext"));
        let ext_text = format!("basicConstraints=critical,CA:FALSE\n{extensions}");
        std::fs::write(&ext, ext_text).map_err(|source| CertError::Write {
            path: ext.clone(),
            source,
        })?;
        openssl(&["req", "-new", "-key", s(key), "-subj", subject, "-out", s(&csr)])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.ca_cert),
            "-CAkey",
            s(&self.ca_key),
            "-set_serial",
            &serial(),
            "-days",
            "3650",
            "-extfile",
            s(&ext),
            "-out",
            s(cert),
        ])?;
        let _ = std::fs::remove_file(csr);
        let _ = std::fs::remove_file(ext);
        Ok(())
    }
}

fn s(path: &Path) -> &str {
    // Paths come from a temp dir or a state dir the caller chose; a
    // non-UTF-8 one would be a configuration error, shown by openssl.
    path.to_str().unwrap_or("<non-utf8-path>")
}

/// A positive serial number that differs between certificates.
fn serial() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}", ((nanos >> 8) ^ (u64::from(std::process::id()) << 32) ^ n) | 1)
}

fn openssl(args: &[&str]) -> Result<(), CertError> {
    let out = Command::new("openssl").args(args).output().map_err(CertError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(CertError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_verifiable_chain() {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::generate(dir.path()).unwrap();
        for cert in [&certs.serving_cert, &certs.admin_cert] {
            let out = Command::new("openssl")
                .args(["verify", "-CAfile", s(&certs.ca_cert), s(cert)])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in", s(&certs.admin_cert)])
            .output()
            .unwrap();
        let subject = String::from_utf8_lossy(&out.stdout);
        assert!(subject.contains("system:masters"), "{subject}");
        assert!(certs.sa_pub.is_file());
    }
}
