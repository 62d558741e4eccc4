//! TLS for the binary: the client settings of `candor cluster` and the client
//! commands, and `candor tls gen-dev-certs` (made by `candor_node::dev_certs`). The
//! `[tls]` files of a server are loaded by `candor_node::tls`.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};
use tonic::transport::ClientTlsConfig;

pub use candor_node::tls::{admin_client_tls, api_server_tls, cluster_tls, upstream_tls};
/// certificate to present.
/// TLS settings of the commands that connect to a server (`candor cluster`, the client
/// commands): the CA that issued the server's certificate, and optionally a client
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
            Some(ca) => Ok(Some(admin_client_tls(
                ca,
                self.tls_cert.as_deref(),
                self.tls_key.as_deref(),
            )?)),
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
