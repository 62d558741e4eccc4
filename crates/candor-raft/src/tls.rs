//! TLS and mutual TLS for the gRPC transport (and anything else on the cluster port).
//!
//! A [`TlsConfig`] is one process's identity (certificate chain and private key, PEM)
//! plus the CA bundle (PEM) it trusts for its peers. Put it in
//! [`GrpcConfig::tls`](crate::grpc::GrpcConfig::tls) and:
//!
//! * [`GrpcTransport`](crate::grpc::GrpcTransport) dials every peer over TLS
//!   (`https://host:port`), checks the server's certificate against the CA and the host
//!   name or IP address it dialed (standard WebPKI rules), and presents its own
//!   certificate as a client certificate;
//! * [`grpc::serve`](crate::grpc::serve) / [`grpc::server_builder`](crate::grpc::server_builder)
//!   accept only clients whose certificate chains to the CA (the handshake fails
//!   otherwise, before any request is read);
//! * [`grpc::raft_service`](crate::grpc::raft_service) additionally checks **who** the
//!   client is, per request (below).
//!
//! # Node identity convention
//!
//! A node's certificate names its Raft node id as a subject alternative name of type URI:
//! `candor-node://<id>` ([`node_uri`]), the id in decimal without sign or leading zeros.
//! It must name exactly one node. The server refuses a `Call` whose `from_node` is not the
//! node named by the client certificate with `PERMISSION_DENIED`, so a node can no longer
//! speak for another (a cluster member's key compromise is contained to that member's
//! identity). Certificates without a node URI (an operator's admin certificate) are
//! accepted by the handshake and by services that do not act on behalf of a node
//! (`Status`, cluster admin), never for Raft `Call`s.
//!
//! For the server side of the handshake the same certificate must also carry the DNS
//! names or IP addresses peers dial (the addresses in the group memberships), and the
//! extended key usages `serverAuth` and `clientAuth` (or none).
//!
//! Key rotation = restart the process with new files; both old and new certificates
//! work as long as they chain to a CA in every peer's bundle (put both CAs in the bundle
//! while rotating the CA).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::error::Error;
use crate::types::NodeId;

/// Scheme (with `//`) of the SAN URI naming a node: `candor-node://<id>`.
pub const NODE_URI_PREFIX: &str = "candor-node://";

/// The SAN URI naming node `id`: `candor-node://<id>`.
pub fn node_uri(id: NodeId) -> String {
    format!("{NODE_URI_PREFIX}{id}")
}

fn tls_err(msg: impl Into<String>) -> Error {
    Error::Tls(msg.into())
}

/// Every certificate in a PEM bundle (other PEM sections are ignored). Fails on a
/// malformed section or when there is no certificate at all.
pub fn parse_certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("{what}: not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(format!(
            "{what}: no certificate found (expected a PEM block \"BEGIN CERTIFICATE\")"
        )));
    }
    for (i, c) in certs.iter().enumerate() {
        X509Certificate::from_der(c.as_ref()).map_err(|e| {
            tls_err(format!(
                "{what}: certificate #{} does not parse: {e}",
                i + 1
            ))
        })?;
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn parse_private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        tls_err(format!(
            "{what}: no usable private key (expected PEM \"BEGIN PRIVATE KEY\", \
             \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"): {e}"
        ))
    })
}

/// Checks that `key` is the private key of the first certificate of `chain`.
pub fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), Error> {
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| tls_err(format!("unsupported private key: {e}")))?;
    rustls::sign::CertifiedKey::new(chain.to_vec(), signing)
        .keys_match()
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => tls_err(
                "the private key does not belong to the certificate (first certificate of the chain)",
            ),
            other => tls_err(format!(
                "cannot check that the private key matches the certificate: {other}"
            )),
        })
}

/// The node ids a DER certificate names (`candor-node://<id>` SAN URIs), in order.
///
/// Fails on a certificate that does not parse, a malformed SAN extension, or a
/// `candor-node://` URI whose id is not a decimal `u64 > 0` (a typo must not silently
/// turn a node certificate into a non-node one).
pub fn node_ids_in_cert(der: &[u8]) -> Result<Vec<NodeId>, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("certificate does not parse: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("malformed subject alternative names: {e}"))?;
    let mut ids = Vec::new();
    let Some(san) = san else {
        return Ok(ids);
    };
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(rest) = uri.strip_prefix(NODE_URI_PREFIX) else {
            continue;
        };
        let id = parse_node_id(rest).ok_or_else(|| {
            format!("SAN URI {uri:?} does not name a node id (expected candor-node://<id>, id > 0)")
        })?;
        ids.push(id);
    }
    Ok(ids)
}

fn parse_node_id(s: &str) -> Option<NodeId> {
    // Canonical decimal only: `+1`, `01`, `1/` must not alias `1`.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return None;
    }
    s.parse().ok().filter(|&id| id > 0)
}

/// Identity (certificate chain + key) and trusted CA bundle of one process, parsed and
/// checked. Cheap to clone. `Debug` never shows the key.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

struct Inner {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    cas: Vec<CertificateDer<'static>>,
    node_ids: Vec<NodeId>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("chain_len", &self.inner.chain.len())
            .field("cas", &self.inner.cas.len())
            .field("node_ids", &self.inner.node_ids)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// From PEM bytes: `cert` (the certificate chain, leaf first), `key` (its private
    /// key) and `ca` (the CA bundle peers are checked against). Checks that each parses,
    /// that the key belongs to the leaf certificate and that node ids in the leaf are
    /// well formed.
    pub fn from_pem(
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
        ca: impl Into<Vec<u8>>,
    ) -> Result<TlsConfig, Error> {
        let (cert_pem, key_pem, ca_pem) = (cert.into(), key.into(), ca.into());
        let chain = parse_certificates(&cert_pem, "certificate")?;
        let key = parse_private_key(&key_pem, "private key")?;
        check_key_matches(&chain, &key)?;
        let cas = parse_certificates(&ca_pem, "CA bundle")?;
        let node_ids = node_ids_in_cert(chain[0].as_ref())
            .map_err(|e| tls_err(format!("certificate: {e}")))?;
        Ok(TlsConfig {
            inner: Arc::new(Inner {
                cert_pem,
                key_pem,
                ca_pem,
                chain,
                cas,
                node_ids,
            }),
        })
    }

    /// As [`from_pem`](Self::from_pem), reading the three files (errors name the file).
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<TlsConfig, Error> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p)
                .map_err(|e| tls_err(format!("cannot read {what} {}: {e}", p.display())))
        };
        let (c, k, a) = (
            read(cert, "certificate")?,
            read(key, "private key")?,
            read(ca, "CA bundle")?,
        );
        let at = |e: Error, p: &Path| match e {
            Error::Tls(m) => tls_err(format!("{m} (in {})", p.display())),
            other => other,
        };
        // Parse each file on its own first so the error names the right one.
        parse_certificates(&c, "certificate").map_err(|e| at(e, cert))?;
        parse_private_key(&k, "private key").map_err(|e| at(e, key))?;
        parse_certificates(&a, "CA bundle").map_err(|e| at(e, ca))?;
        TlsConfig::from_pem(c, k, a).map_err(|e| match e {
            Error::Tls(m) => tls_err(format!(
                "{m} (certificate {}, key {})",
                cert.display(),
                key.display()
            )),
            other => other,
        })
    }

    /// The node ids the leaf certificate names (`candor-node://<id>`); empty for a
    /// non-node (e.g. operator) certificate.
    pub fn node_ids(&self) -> &[NodeId] {
        &self.inner.node_ids
    }

    /// Checks that the certificate names exactly node `id`.
    pub fn check_names_node(&self, id: NodeId) -> Result<(), Error> {
        match self.inner.node_ids.as_slice() {
            [only] if *only == id => Ok(()),
            [] => Err(tls_err(format!(
                "the certificate names no node; a node certificate needs the SAN URI {}",
                node_uri(id)
            ))),
            [only] => Err(tls_err(format!(
                "the certificate is for node {only}, but this is node {id}"
            ))),
            many => Err(tls_err(format!(
                "the certificate names several nodes {many:?}; it must name exactly one ({})",
                node_uri(id)
            ))),
        }
    }

    /// Checks that the CA bundle accepts this certificate as a client certificate now
    /// (chain, validity period, key usage): what every peer's server will check.
    pub fn check_chain(&self) -> Result<(), Error> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &self.inner.cas {
            roots
                .add(ca.clone())
                .map_err(|e| tls_err(format!("CA bundle: unusable CA certificate: {e}")))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| tls_err(format!("CA bundle: {e}")))?;
        verifier
            .verify_client_cert(
                &self.inner.chain[0],
                &self.inner.chain[1..],
                UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| {
                tls_err(format!(
                    "the certificate is not accepted by the CA bundle as a client certificate: {e}"
                ))
            })
    }

    /// The identity (chain and key) for tonic.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.inner.cert_pem, &self.inner.key_pem)
    }

    /// The CA bundle for tonic.
    pub fn ca_certificate(&self) -> Certificate {
        Certificate::from_pem(&self.inner.ca_pem)
    }

    /// Server side: present the identity, **require** a client certificate chaining to
    /// the CA bundle.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(self.ca_certificate())
    }

    /// Client side: verify the server against the CA bundle, present the identity.
    pub fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca_certificate())
            .identity(self.identity())
    }
}

/// Who a request comes from, from the client certificate of its connection.
///
/// `Ok(None)` when the connection carries no TLS client certificate; `Err` with a precise
/// reason when the certificate names no node, several nodes, or is malformed.
pub fn peer_node_id(certs: Option<&[CertificateDer<'_>]>) -> Result<Option<NodeId>, String> {
    let Some(leaf) = certs.and_then(<[_]>::first) else {
        return Ok(None);
    };
    match node_ids_in_cert(leaf.as_ref())?.as_slice() {
        [id] => Ok(Some(*id)),
        [] => Err(format!(
            "the client certificate names no node (expected a SAN URI {NODE_URI_PREFIX}<id>)"
        )),
        many => Err(format!(
            "the client certificate names several nodes {many:?}; a node certificate names exactly one"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_syntax() {
        assert_eq!(parse_node_id("1"), Some(1));
        assert_eq!(parse_node_id("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "0",
            "01",
            "+1",
            "-1",
            "1/",
            "1 ",
            "18446744073709551616",
            "x",
        ] {
            assert_eq!(parse_node_id(bad), None, "{bad:?}");
        }
        assert_eq!(node_uri(7), "candor-node://7");
    }

    #[test]
    fn garbage_never_panics() {
        assert!(node_ids_in_cert(b"").is_err());
        assert!(node_ids_in_cert(&[0x30, 0x82, 0xff, 0xff]).is_err());
        assert!(parse_certificates(b"", "x").is_err());
        assert!(
            parse_certificates(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "x"
            )
            .is_err()
        );
        assert!(parse_private_key(b"nothing", "k").is_err());
        let junk = [CertificateDer::from(vec![1u8, 2, 3])];
        assert!(peer_node_id(Some(&junk)).is_err());
        assert_eq!(peer_node_id(None), Ok(None));
        assert_eq!(peer_node_id(Some(&[])), Ok(None));
    }
}
