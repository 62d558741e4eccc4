//! TLS files of the `[tls]` configuration, loaded and checked at start-up: each
//! error names the config key and the file.
//!
//! Identity convention (see `candor_raft::tls`): a member's certificate names its
//! node id as the SAN URI `candor-node://<id>`, plus the DNS names / IPs its peers
//! and clients dial.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use candor_raft::tls::{self as rtls, TlsConfig};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::NodeError;
use crate::config::Config;

macro_rules! config_err {
    ($($t:tt)*) => { NodeError::Config(format!($($t)*)) };
}
macro_rules! bail {
    ($($t:tt)*) => { return Err(NodeError::Config(format!($($t)*))) };
}

fn cfg_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Config(e.to_string())
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path)
        .map_err(|e| NodeError::Config(format!("{key}: cannot read {}: {e}", path.display())))
}

/// A certificate chain and its key, read and checked (parse, key matches leaf).
fn identity_pem(
    cert: &Path,
    key: &Path,
    cert_key: &str,
    key_key: &str,
) -> Result<(Vec<u8>, Vec<u8>), NodeError> {
    let c = read(cert, cert_key)?;
    let k = read(key, key_key)?;
    let chain = rtls::parse_certificates(&c, &format!("{cert_key} ({})", cert.display()))
        .map_err(cfg_err)?;
    let pk =
        rtls::parse_private_key(&k, &format!("{key_key} ({})", key.display())).map_err(cfg_err)?;
    rtls::check_key_matches(&chain, &pk).map_err(|e| {
        config_err!(
            "{key_key} ({}) and {cert_key} ({}): {e}",
            key.display(),
            cert.display()
        )
    })?;
    if let Ok(meta) = std::fs::metadata(key)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %key.display(), "{key_key} is readable by group or others; chmod 600 it");
    }
    Ok((c, k))
}

/// A CA bundle, read and checked.
fn ca_pem(path: &Path, key: &str) -> Result<Vec<u8>, NodeError> {
    let a = read(path, key)?;
    rtls::parse_certificates(&a, &format!("{key} ({})", path.display())).map_err(cfg_err)?;
    Ok(a)
}

fn need<'a>(p: &'a Option<PathBuf>, key: &str, why: &str) -> Result<&'a Path, NodeError> {
    p.as_deref()
        .ok_or_else(|| config_err!("{why} needs {key} to be set"))
}

/// `tls.cluster`: the member's mutual-TLS settings for the cluster port, or `None`.
/// Checks that the certificate names exactly `cluster.node_id` and chains to `tls.ca`.
pub fn cluster_tls(config: &Config) -> Result<Option<TlsConfig>, NodeError> {
    let t = &config.tls;
    if !t.cluster {
        return Ok(None);
    }
    let why = "tls.cluster = true";
    let cert = need(&t.cert, "tls.cert", why)?;
    let key = need(&t.key, "tls.key", why)?;
    let ca = need(&t.ca, "tls.ca", why)?;
    let (c, k) = identity_pem(cert, key, "tls.cert", "tls.key")?;
    let a = ca_pem(ca, "tls.ca")?;
    let tls = TlsConfig::from_pem(c, k, a).map_err(cfg_err)?;
    tls.check_names_node(config.cluster.node_id).map_err(|e| {
        config_err!(
            "tls.cert ({}) for cluster.node_id {}: {e}",
            cert.display(),
            config.cluster.node_id
        )
    })?;
    tls.check_chain().map_err(|e| {
        config_err!(
            "tls.cert ({}) and tls.ca ({}): {e}",
            cert.display(),
            ca.display()
        )
    })?;
    Ok(Some(tls))
}

/// `tls.api`: the public API listener's TLS settings (members, `candor dev` and
/// `--role api`), or `None`.
pub fn api_server_tls(config: &Config) -> Result<Option<ServerTlsConfig>, NodeError> {
    let t = &config.tls;
    if !t.api {
        return Ok(None);
    }
    let (c, k) = match (&t.api_cert, &t.api_key) {
        (Some(c), Some(k)) => identity_pem(c, k, "tls.api_cert", "tls.api_key")?,
        _ => {
            let why = "tls.api = true (without tls.api_cert)";
            let c = need(&t.cert, "tls.cert", why)?;
            let k = need(&t.key, "tls.key", why)?;
            identity_pem(c, k, "tls.cert", "tls.key")?
        }
    };
    let mut server = ServerTlsConfig::new().identity(Identity::from_pem(c, k));
    if let Some(ca) = &t.api_client_ca {
        server = server.client_ca_root(Certificate::from_pem(ca_pem(ca, "tls.api_client_ca")?));
    }
    Ok(Some(server))
}

/// `--role api` with `tls.api`: TLS towards the members' API (CA `tls.upstream_ca` or
/// `tls.ca`; client certificate `tls.cert` / `tls.key` when set), or `None`.
pub fn upstream_tls(config: &Config) -> Result<Option<ClientTlsConfig>, NodeError> {
    let t = &config.tls;
    if !t.api {
        return Ok(None);
    }
    let (ca, key) = match (&t.upstream_ca, &t.ca) {
        (Some(p), _) => (p, "tls.upstream_ca"),
        (None, Some(p)) => (p, "tls.ca"),
        (None, None) => bail!(
            "tls.api = true on --role api needs tls.upstream_ca (or tls.ca): the CA bundle \
             that issued the members' API certificates"
        ),
    };
    let mut client = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem(ca, key)?));
    if let (Some(c), Some(k)) = (&t.cert, &t.key) {
        let (c, k) = identity_pem(c, k, "tls.cert", "tls.key")?;
        client = client.identity(Identity::from_pem(c, k));
    }
    Ok(Some(client))
}

/// `candor cluster --tls-ca ... --tls-cert ... --tls-key ...`.
pub fn admin_client_tls(
    ca: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<ClientTlsConfig, NodeError> {
    let mut client =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem(ca, "--tls-ca")?));
    match (cert, key) {
        (Some(c), Some(k)) => {
            let (c, k) = identity_pem(c, k, "--tls-cert", "--tls-key")?;
            client = client.identity(Identity::from_pem(c, k));
        }
        (None, None) => {}
        _ => bail!("--tls-cert and --tls-key go together"),
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev_certs::generate as gen_dev_certs;

    #[test]
    fn dev_certs_load_as_node_identities() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("tls");
        gen_dev_certs(&d, &[1, 2], &["localhost".into(), "127.0.0.1".into()]).unwrap();
        // A second run adds a node with the same CA and leaves the others alone.
        let before = std::fs::read(d.join("node-1.crt")).unwrap();
        let again = gen_dev_certs(&d, &[1, 3], &["localhost".into()]).unwrap();
        assert_eq!(again, vec![d.join("node-3.crt"), d.join("node-3.key")]);
        assert_eq!(std::fs::read(d.join("node-1.crt")).unwrap(), before);
        for id in [1, 2, 3] {
            let t = TlsConfig::from_files(
                &d.join(format!("node-{id}.crt")),
                &d.join(format!("node-{id}.key")),
                &d.join("ca.crt"),
            )
            .unwrap();
            t.check_names_node(id).unwrap();
            t.check_chain().unwrap();
        }
        let admin = TlsConfig::from_files(
            &d.join("admin.crt"),
            &d.join("admin.key"),
            &d.join("ca.crt"),
        )
        .unwrap();
        assert!(admin.node_ids().is_empty());
        admin.check_chain().unwrap();

        // Start-up checks name the key at fault.
        let mut c = Config::default();
        c.cluster.node_id = 2;
        c.tls.cluster = true;
        c.tls.cert = Some(d.join("node-1.crt"));
        c.tls.key = Some(d.join("node-1.key"));
        c.tls.ca = Some(d.join("ca.crt"));
        let e = cluster_tls(&c).unwrap_err().to_string();
        assert!(
            e.contains("cluster.node_id 2") && e.contains("for node 1"),
            "{e}"
        );
        c.tls.key = Some(d.join("node-2.key"));
        let e = cluster_tls(&c).unwrap_err().to_string();
        assert!(
            e.contains("tls.key") && e.contains("does not belong"),
            "{e}"
        );
        c.tls.cert = Some(d.join("node-2.crt"));
        assert!(cluster_tls(&c).unwrap().is_some());
        c.tls.ca = Some(d.join("missing.crt"));
        let e = cluster_tls(&c).unwrap_err().to_string();
        assert!(e.contains("tls.ca: cannot read"), "{e}");
        c.tls.ca = Some(d.join("node-2.key"));
        let e = cluster_tls(&c).unwrap_err().to_string();
        assert!(e.contains("tls.ca") && e.contains("no certificate"), "{e}");
        c.tls.api = true;
        c.tls.ca = Some(d.join("ca.crt"));
        assert!(api_server_tls(&c).unwrap().is_some());
        assert!(upstream_tls(&c).unwrap().is_some());
    }
}
