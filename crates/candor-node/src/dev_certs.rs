//! `candor tls gen-dev-certs`: a throw-away CA and node certificates for trials and
//! tests (NOT for production), made with rcgen. Each node certificate names its node
//! id as the SAN URI `candor-node://<id>` ([`candor_raft::tls::node_uri`]), the
//! identity convention the Raft transport checks, plus the DNS names / IPs its peers
//! and clients dial.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use candor_raft::tls as rtls;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::NodeError;

type Result<T, E = NodeError> = std::result::Result<T, E>;

fn bad(m: String) -> NodeError {
    NodeError::Keys(m)
}

fn rc(e: rcgen::Error) -> NodeError {
    NodeError::Keys(format!("generating a certificate: {e}"))
}

macro_rules! bail {
    ($($t:tt)*) => { return Err(NodeError::Keys(format!($($t)*))) };
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| NodeError::KeyFile {
        what: format!("cannot read {}", path.display()),
        source,
    })
}

fn write_pem(path: &Path, text: &str, private: bool) -> Result<()> {
    if private {
        crate::keys::write_private(path, text.as_bytes())
    } else {
        std::fs::write(path, text).map_err(|source| NodeError::KeyFile {
            what: format!("cannot write {}", path.display()),
            source,
        })
    }
}

fn san(host: &str) -> Result<SanType> {
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            host.try_into()
                .map_err(|e| bad(format!("--host {host:?} is not a DNS name or IP: {e}")))?,
        ),
    })
}

/// Writes the CA (unless present), a certificate per node and an admin certificate;
/// returns the files written.
pub fn generate(dir: &Path, nodes: &[u64], hosts: &[String]) -> Result<Vec<PathBuf>> {
    if nodes.contains(&0) {
        bail!("--nodes: node ids must be > 0");
    }
    crate::keys::ensure_private_dir(dir)?;
    let mut written = Vec::new();
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let issuer = if ca_crt.exists() && ca_key.exists() {
        let key = KeyPair::from_pem(&String::from_utf8_lossy(&read(&ca_key)?))
            .map_err(|e| bad(format!("{}: not a usable key: {e}", ca_key.display())))?;
        Issuer::from_ca_cert_pem(&String::from_utf8_lossy(&read(&ca_crt)?), key).map_err(|e| {
            bad(format!(
                "{}: not a usable CA certificate: {e}",
                ca_crt.display()
            ))
        })?
    } else if ca_crt.exists() || ca_key.exists() {
        bail!(
            "{} holds only one of ca.crt and ca.key; remove it or choose another --dir",
            dir.display()
        );
    } else {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "candor dev CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(rc)?;
        let cert = params.self_signed(&key).map_err(rc)?;
        write_pem(&ca_key, &key.serialize_pem(), true)?;
        write_pem(&ca_crt, &cert.pem(), false)?;
        written.extend([ca_crt.clone(), ca_key.clone()]);
        Issuer::new(params, key)
    };
    let mut leaf = |name: &str, cn: &str, sans: Vec<SanType>| -> Result<()> {
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        match (crt.exists(), key.exists()) {
            (true, true) => return Ok(()),
            (false, false) => {}
            _ => bail!(
                "{} holds only one of {name}.crt and {name}.key; remove it",
                dir.display()
            ),
        }
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let k = KeyPair::generate().map_err(rc)?;
        let cert = params.signed_by(&k, &issuer).map_err(rc)?;
        write_pem(&key, &k.serialize_pem(), true)?;
        write_pem(&crt, &cert.pem(), false)?;
        written.extend([crt, key]);
        Ok(())
    };
    for &id in nodes {
        let mut sans = vec![SanType::URI(
            rtls::node_uri(id)
                .as_str()
                .try_into()
                .map_err(|e| bad(format!("node uri: {e}")))?,
        )];
        for h in hosts {
            sans.push(san(h)?);
        }
        leaf(&format!("node-{id}"), &format!("candor node {id}"), sans)?;
    }
    leaf("admin", "candor admin", Vec::new())?;
    Ok(written)
}
