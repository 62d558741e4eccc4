//! TLS for the binary: the `[tls]` files loaded and checked at start-up (each error
//! names the config key and the file), the client settings of `candor cluster`, and
//! `candor tls gen-dev-certs` (made by `candor_node::dev_certs`).
//!
//! Identity convention (see `candor_raft::tls`): a member's certificate names its
//! node id as the SAN URI `candor-node://<id>`, plus the DNS names / IPs its peers
//! and clients dial.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use candor_raft::tls::{self as rtls, TlsConfig};
use clap::{Args, Subcommand};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::Config;

fn read(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))
}

/// A certificate chain and its key, read and checked (parse, key matches leaf).
fn identity_pem(
    cert: &Path,
    key: &Path,
    cert_key: &str,
    key_key: &str,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let c = read(cert, cert_key)?;
    let k = read(key, key_key)?;
    let chain = rtls::parse_certificates(&c, &format!("{cert_key} ({})", cert.display()))?;
    let pk = rtls::parse_private_key(&k, &format!("{key_key} ({})", key.display()))?;
    rtls::check_key_matches(&chain, &pk).map_err(|e| {
        anyhow!(
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
fn ca_pem(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    let a = read(path, key)?;
    rtls::parse_certificates(&a, &format!("{key} ({})", path.display()))?;
    Ok(a)
}

fn need<'a>(p: &'a Option<PathBuf>, key: &str, why: &str) -> anyhow::Result<&'a Path> {
    p.as_deref()
        .ok_or_else(|| anyhow!("{why} needs {key} to be set"))
}

/// `tls.cluster`: the member's mutual-TLS settings for the cluster port, or `None`.
/// Checks that the certificate names exactly `cluster.node_id` and chains to `tls.ca`.
pub fn cluster_tls(config: &Config) -> anyhow::Result<Option<TlsConfig>> {
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
    let tls = TlsConfig::from_pem(c, k, a)?;
    tls.check_names_node(config.cluster.node_id).map_err(|e| {
        anyhow!(
            "tls.cert ({}) for cluster.node_id {}: {e}",
            cert.display(),
            config.cluster.node_id
        )
    })?;
    tls.check_chain().map_err(|e| {
        anyhow!(
            "tls.cert ({}) and tls.ca ({}): {e}",
            cert.display(),
            ca.display()
        )
    })?;
    Ok(Some(tls))
}

/// `tls.api`: the public API listener's TLS settings (members, `candor dev` and
/// `--role api`), or `None`.
pub fn api_server_tls(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
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
pub fn upstream_tls(config: &Config) -> anyhow::Result<Option<ClientTlsConfig>> {
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
) -> anyhow::Result<ClientTlsConfig> {
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

/// TLS settings of the commands that connect to a server (`candor cluster`, the client
/// commands): the CA that issued the server's certificate, and optionally a client
/// certificate to present.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientTlsArgs {
    /// Connect over TLS (servers with `tls.api` or, for `candor cluster`, members with
    /// `tls.cluster`): the CA bundle that issued the server's certificate.
    #[arg(long, global = true, env = "CANDOR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: a client certificate to present (issued by the server's client
    /// CA, e.g. admin.crt from `candor tls gen-dev-certs` for `candor cluster`).
    #[arg(long, global = true, env = "CANDOR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// With --tls-cert: its private key.
    #[arg(long, global = true, env = "CANDOR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// The client TLS settings; `None` for plaintext (no `--tls-ca`).
    pub fn config(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        match &self.tls_ca {
            Some(ca) => {
                admin_client_tls(ca, self.tls_cert.as_deref(), self.tls_key.as_deref()).map(Some)
            }
            None if self.tls_cert.is_some() || self.tls_key.is_some() => bail!(
                "--tls-cert/--tls-key need --tls-ca (the CA that issued the server's certificate)"
            ),
            None => Ok(None),
        }
    }
}

/// `candor tls ...`.
#[derive(Debug, Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub what: TlsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a throw-away CA and certificates for trials and tests (NOT for
    /// production: use your own PKI). Writes ca.crt/ca.key (reused when present),
    /// node-<ID>.crt/.key per node (SAN URI candor-node://<ID> plus every --host) and
    /// admin.crt/.key (a client certificate for `candor cluster`). Existing
    /// certificates are left as they are.
    GenDevCerts {
        /// Directory to write to (created with mode 0700; keys 0600).
        #[arg(long)]
        dir: PathBuf,
        /// Node ids, comma separated, e.g. 1,2,3.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<u64>,
        /// DNS name or IP address every node certificate is valid for (repeat)
        /// [default: localhost and 127.0.0.1].
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

pub fn run(args: TlsArgs) -> anyhow::Result<()> {
    match args.what {
        TlsCommand::GenDevCerts { dir, nodes, hosts } => {
            let hosts = if hosts.is_empty() {
                vec!["localhost".to_string(), "127.0.0.1".to_string()]
            } else {
                hosts
            };
            let written = candor_node::dev_certs::generate(&dir, &nodes, &hosts)?;
            for p in written {
                println!("wrote {}", p.display());
            }
            println!(
                "member config: [tls] cert = node-<ID>.crt, key = node-<ID>.key, ca = ca.crt, \
                 cluster = true, api = true; admin CLI: candor cluster --tls-ca ca.crt \
                 --tls-cert admin.crt --tls-key admin.key ..."
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_node::dev_certs::generate as gen_dev_certs;

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
