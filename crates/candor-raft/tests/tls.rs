//! The gRPC transport over mutual TLS: a three-node cluster works end to end; the
//! server refuses a request whose `from_node` is not the node named by the client
//! certificate (`PERMISSION_DENIED`), a certificate naming no node for Raft calls, and
//! connections without a client certificate or with one from another CA. Certificates
//! are made with rcgen for each run.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use candor_proto::raft::v1 as pb;
use candor_raft::grpc::{GrpcConfig, GrpcTransport, REJECTED_METADATA_KEY, serve};
use candor_raft::testing::AppendLog;
use candor_raft::tls::{TlsConfig, node_uri};
use candor_raft::{
    GroupId, NodeId, RaftGroup, RaftNode, RaftNodeConfig, RaftTransport, RpcKind, TransportError,
};
use candor_store::{MemStore, Store};
use common::{WAIT, items_at_least, linearizable_items, sm_prefix};
use pb::raft_transport_client::RaftTransportClient;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const G: GroupId = GroupId(5);

/// A throw-away certificate authority.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A PEM certificate and its PEM key.
struct Leaf {
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("CA certificate");
        Pki { ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A certificate for 127.0.0.1 / localhost naming `uris` (SAN URIs).
    fn leaf(&self, uris: &[String]) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        for u in uris {
            params
                .subject_alt_names
                .push(SanType::URI(u.as_str().try_into().expect("ia5")));
        }
        params.distinguished_name.push(DnType::CommonName, "test");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn node(&self, id: NodeId) -> Leaf {
        self.leaf(&[node_uri(id)])
    }

    fn tls(&self, leaf: &Leaf) -> TlsConfig {
        TlsConfig::from_pem(leaf.cert.clone(), leaf.key.clone(), self.ca_pem()).expect("tls")
    }

    fn grpc(&self, id: NodeId) -> GrpcConfig {
        GrpcConfig {
            tls: Some(self.tls(&self.node(id))),
            ..GrpcConfig::default()
        }
    }
}

struct Proc {
    id: NodeId,
    addr: SocketAddr,
    node: RaftNode,
    group: RaftGroup<AppendLog>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Proc {
    async fn kill(self) {
        let _ = self.stop.send(());
        self.node.shutdown().await;
        tokio::time::timeout(WAIT, self.server)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server");
    }
}

async fn start(id: NodeId, listener: TcpListener, config: GrpcConfig) -> Proc {
    let addr = listener.local_addr().expect("addr");
    let transport = Arc::new(GrpcTransport::new(id, config.clone()));
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let node = RaftNode::new(
        RaftNodeConfig::new(id, addr.to_string()),
        Arc::clone(&store),
        transport,
    )
    .expect("node");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(&node, &config, listener, async {
        let _ = stopped.await;
    }));
    let logic = AppendLog::open(Arc::clone(&store), &sm_prefix(G)).expect("logic");
    let group = node.start_group(G, logic).await.expect("group");
    Proc {
        id,
        addr,
        node,
        group,
        stop,
        server,
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_mutual_tls() {
    let pki = Pki::new("candor test CA");
    let mut ls = Vec::new();
    for _ in 0..3 {
        ls.push(listener().await);
    }
    let members: BTreeMap<NodeId, String> = (1u64..)
        .zip(&ls)
        .map(|(id, l)| (id, l.local_addr().expect("addr").to_string()))
        .collect();
    let mut procs = Vec::new();
    for (id, l) in (1u64..).zip(ls) {
        procs.push(start(id, l, pki.grpc(id)).await);
    }
    procs[0]
        .group
        .initialize(members.clone())
        .await
        .expect("initialize");
    // Every replica writes; followers forward to the leader over mTLS.
    let mut written = Vec::new();
    for round in 0..3 {
        for p in &procs {
            let data = format!("n{}-{round}", p.id).into_bytes();
            p.group.write(data.clone()).await.expect("write over mTLS");
            written.push(data);
        }
    }
    let leader = procs[0].group.wait_for_leader(WAIT).await.expect("leader");
    let lp = procs.iter().find(|p| p.id == leader).expect("leader proc");
    let mut items = linearizable_items(&lp.group).await;
    items.sort();
    let mut want = written.clone();
    want.sort();
    assert_eq!(items, want);
    for p in &procs {
        assert_eq!(items_at_least(&p.group, want.len()).await.len(), want.len());
    }
    for p in procs {
        p.kill().await;
    }
}

/// A one-node group served over mTLS.
async fn lone(pki: &Pki) -> Proc {
    let l = listener().await;
    let addr = l.local_addr().expect("addr");
    let p = start(7, l, pki.grpc(7)).await;
    p.group
        .initialize([(7, addr.to_string())].into_iter().collect())
        .await
        .expect("initialize");
    p.group.wait_for_leader(WAIT).await.expect("leader");
    p
}

/// A raw client to `addr` trusting `ca`, presenting `id` (if any).
async fn raw_client(
    addr: SocketAddr,
    ca: &str,
    id: Option<&Leaf>,
) -> Result<RaftTransportClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(l) = id {
        tls = tls.identity(Identity::from_pem(&l.cert, &l.key));
    }
    let ch = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(RaftTransportClient::new(ch))
}

fn call(from: NodeId, kind: RpcKind, payload: &[u8]) -> pb::RaftRequest {
    pb::RaftRequest {
        group: G.0,
        from_node: from,
        to_node: 7,
        kind: i32::from(kind.as_u8()),
        payload: payload.to_vec(),
    }
}

fn assert_refused(
    r: Result<tonic::Response<pb::RaftResponse>, tonic::Status>,
    code: Code,
) -> String {
    let status = r.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.metadata().contains_key(REJECTED_METADATA_KEY),
        "not marked as a rejection: {status:?}"
    );
    status.message().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_node_must_match_the_client_certificate() {
    let pki = Pki::new("candor test CA");
    let p = lone(&pki).await;
    let node2 = pki.node(2);
    let mut c = raw_client(p.addr, &pki.ca_pem(), Some(&node2))
        .await
        .expect("a node certificate of the CA connects");

    // Node 2's certificate claiming to be node 3: refused before the group sees it.
    let msg = assert_refused(
        c.call(call(3, RpcKind::ClientWrite, b"forged")).await,
        Code::PermissionDenied,
    );
    assert!(
        msg.contains("for node 2") && msg.contains("from_node 3"),
        "imprecise message: {msg}"
    );
    // Speaking as itself it passes the identity check (and then fails on the payload).
    assert_refused(
        c.call(call(2, RpcKind::AppendEntries, &[0xff; 3])).await,
        Code::InvalidArgument,
    );
    // Status needs no node identity.
    let st = c.status(pb::StatusRequest {}).await.expect("status");
    assert_eq!(st.into_inner().node_id, 7);

    // A certificate naming no node (an operator's): Status yes, Raft calls no.
    let admin = pki.leaf(&["spiffe://candor/admin".to_string()]);
    let mut a = raw_client(p.addr, &pki.ca_pem(), Some(&admin))
        .await
        .expect("connect");
    a.status(pb::StatusRequest {}).await.expect("status");
    let msg = assert_refused(
        a.call(call(2, RpcKind::ClientWrite, b"x")).await,
        Code::PermissionDenied,
    );
    assert!(msg.contains("names no node"), "{msg}");

    // A certificate naming two nodes speaks for neither.
    let two = pki.leaf(&[node_uri(2), node_uri(3)]);
    let mut t = raw_client(p.addr, &pki.ca_pem(), Some(&two))
        .await
        .expect("connect");
    let msg = assert_refused(
        t.call(call(2, RpcKind::ClientWrite, b"x")).await,
        Code::PermissionDenied,
    );
    assert!(msg.contains("several nodes"), "{msg}");

    // A malformed node URI in an otherwise valid certificate.
    let bad = pki.leaf(&["candor-node://02".to_string()]);
    let mut b = raw_client(p.addr, &pki.ca_pem(), Some(&bad))
        .await
        .expect("connect");
    assert_refused(
        b.call(call(2, RpcKind::ClientWrite, b"x")).await,
        Code::PermissionDenied,
    );

    // Through the transport: a node whose certificate is not its own id is refused, and
    // the refusal is `Remote` (never delivered, safe to retry elsewhere).
    let liar = GrpcTransport::new(
        3,
        GrpcConfig {
            tls: Some(pki.tls(&node2)),
            ..GrpcConfig::default()
        },
    );
    let r = liar
        .send(
            7,
            &p.addr.to_string(),
            G,
            RpcKind::ClientWrite,
            b"forged".to_vec(),
        )
        .await;
    match r {
        Err(TransportError::Remote(m)) => assert!(m.contains("PermissionDenied"), "{m}"),
        other => panic!("expected a remote refusal, got {other:?}"),
    }

    // Nothing of that reached the log.
    assert!(linearizable_items(&p.group).await.is_empty());
    p.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_trusted_certificate_cannot_call() {
    let pki = Pki::new("candor test CA");
    let other = Pki::new("some other CA");
    let p = lone(&pki).await;

    // No client certificate: the handshake (or the first call) fails.
    let r = match raw_client(p.addr, &pki.ca_pem(), None).await {
        Ok(mut c) => c.status(pb::StatusRequest {}).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(r.is_err(), "a client without a certificate was served");

    // A certificate for node 2 from another CA.
    let foreign = other.node(2);
    let r = match raw_client(p.addr, &pki.ca_pem(), Some(&foreign)).await {
        Ok(mut c) => c
            .call(call(2, RpcKind::ClientWrite, b"x"))
            .await
            .map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(r.is_err(), "a certificate from another CA was accepted");

    // Plaintext against the TLS port.
    let r = match RaftTransportClient::connect(format!("http://{}", p.addr)).await {
        Ok(mut c) => c.status(pb::StatusRequest {}).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(r.is_err(), "a plaintext client was served");

    // A whole node of another CA: its transport cannot deliver anything, and it does
    // not trust our server either.
    let t = GrpcTransport::new(
        2,
        GrpcConfig {
            tls: Some(other.tls(&foreign)),
            ..GrpcConfig::default()
        },
    );
    let r = t
        .send(
            7,
            &p.addr.to_string(),
            G,
            RpcKind::ClientWrite,
            b"x".to_vec(),
        )
        .await;
    assert!(r.is_err(), "{r:?}");

    assert!(linearizable_items(&p.group).await.is_empty());
    p.kill().await;
}

#[test]
fn tls_config_checks_its_material() {
    let pki = Pki::new("candor test CA");
    let n1 = pki.node(1);
    let n2 = pki.node(2);
    let ok = pki.tls(&n1);
    assert_eq!(ok.node_ids(), &[1]);
    ok.check_names_node(1).expect("names node 1");
    let e = ok.check_names_node(2).expect_err("is node 1");
    assert!(e.to_string().contains("for node 1"), "{e}");
    ok.check_chain().expect("chains to the CA");

    // Key of another certificate.
    let e = TlsConfig::from_pem(n1.cert.clone(), n2.key.clone(), pki.ca_pem())
        .expect_err("mismatched key");
    assert!(e.to_string().contains("does not belong"), "{e}");
    // Not PEM at all / empty CA bundle / garbage key.
    assert!(TlsConfig::from_pem("junk", n1.key.clone(), pki.ca_pem()).is_err());
    assert!(TlsConfig::from_pem(n1.cert.clone(), n1.key.clone(), "").is_err());
    assert!(TlsConfig::from_pem(n1.cert.clone(), "junk", pki.ca_pem()).is_err());
    // A CA bundle that does not issue the certificate.
    let other = Pki::new("some other CA");
    let t = TlsConfig::from_pem(n1.cert.clone(), n1.key.clone(), other.ca_pem()).expect("parses");
    assert!(t.check_chain().is_err());
    // Files: the error names the missing file.
    let e = TlsConfig::from_files(
        std::path::Path::new("/nonexistent/node.crt"),
        std::path::Path::new("/nonexistent/node.key"),
        std::path::Path::new("/nonexistent/ca.crt"),
    )
    .expect_err("missing");
    assert!(e.to_string().contains("/nonexistent/node.crt"), "{e}");
}
