//! A 3-member cluster as three `candor serve --role all` processes on
//! 127.0.0.1, 127.0.0.2 and 127.0.0.3, plus a stateless `candor serve --role
//! api` front door on 127.0.0.4 forwarding to them, driven only through the SDK
//! (the load and every check go through the members and the front door).
//!
//! Under a steady publish load it SIGKILLs the leader of shard 0, then the
//! sequencer's leader, restarting each; afterwards every acknowledged mutation
//! verifies (lookup and history), every SMT was merged by its deadline
//! (`Client::wait_merged`), every member serves the same head for each epoch
//! and every head extends to the last (the SDK's head tracker checks
//! consistency proofs). It prints the failover time (sequencer leader killed →
//! next epoch signed). Timing is printed, never asserted; the seed of the
//! load's label choice is printed and replayable with `CANDOR_CLUSTER_SEED`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candor_client::{Client, PinnedConfig, VerifiedPublish};
use candor_proto::raft::v1 as rpb;
use candor_proto::raft::v1::raft_transport_client::RaftTransportClient;
use tonic_health::pb::health_check_response::ServingStatus;

mod common;

use common::{BIN, SEQUENCER_GROUP, free_port, health, keygen};

const MEMBERS: usize = 3;

/// The auditor whose cosignatures every member accepts.
fn auditor_key() -> candor_core::signed::SigningKeyPair {
    candor_core::signed::SigningKeyPair::from_seed(&[7; 32])
}

struct Member {
    id: u64,
    ip: String,
    api_port: u16,
    raft_port: u16,
    child: Option<Child>,
    runs: u32,
}

impl Member {
    fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.api_port)
    }
    fn raft_addr(&self) -> String {
        format!("{}:{}", self.ip, self.raft_port)
    }
}

struct Cluster {
    dir: PathBuf,
    members: Vec<Member>,
}

impl Cluster {
    fn new(dir: &Path) -> Cluster {
        keygen(&dir.join("keys"));
        let members = (1..=MEMBERS as u64)
            .map(|id| {
                let ip = format!("127.0.0.{id}");
                Member {
                    id,
                    api_port: free_port(&ip),
                    raft_port: free_port(&ip),
                    ip,
                    child: None,
                    runs: 0,
                }
            })
            .collect();
        Cluster {
            dir: dir.to_path_buf(),
            members,
        }
    }

    fn start(&mut self, i: usize) {
        let member_args: Vec<String> = self
            .members
            .iter()
            .flat_map(|m| {
                [
                    "--member".to_string(),
                    format!("{}={}", m.id, m.raft_addr()),
                ]
            })
            .collect();
        let m = &mut self.members[i];
        m.runs += 1;
        let log = |name: &str| {
            std::fs::File::create(
                self.dir
                    .join(format!("member{}.{name}.{}.log", m.id, m.runs)),
            )
            .unwrap()
        };
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--role", "all", "--dev-token", "--data-dir"])
            .arg(self.dir.join(format!("data{}", m.id)))
            .arg("--keys-dir")
            .arg(self.dir.join("keys"))
            .args(["--node-id", &m.id.to_string()])
            .args(["--listen", &format!("{}:{}", m.ip, m.api_port)])
            .args(["--raft-listen", &m.raft_addr()])
            .args(["--epoch-interval", "300ms", "--shards", "4"])
            .args(&member_args)
            .env("CANDOR_LOG", "info,openraft=warn")
            .env(
                "CANDOR_API__AUDITOR_KEYS",
                format!("[\"{}\"]", hex::encode(auditor_key().public_key().0)),
            )
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"));
        if m.id == 1 {
            cmd.arg("--bootstrap");
        }
        m.child = Some(cmd.spawn().expect("spawn candor serve"));
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    fn logs(&self) -> String {
        common::tail_logs(&self.dir, 40)
    }

    async fn wait_serving(&mut self, i: usize) {
        let url = self.members[i].url();
        for _ in 0..1200 {
            if let Some(c) = self.members[i].child.as_mut()
                && let Some(status) = c.try_wait().unwrap()
            {
                panic!("member {} exited with {status}\n{}", i + 1, self.logs());
            }
            if health(&url).await == Some(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("member {} never became SERVING\n{}", i + 1, self.logs());
    }

    /// Leader of `group` as some live member sees it.
    async fn leader_of(&self, group: u64) -> u64 {
        for _ in 0..600 {
            for m in self.members.iter().filter(|m| m.child.is_some()) {
                let Ok(mut c) =
                    RaftTransportClient::connect(format!("http://{}", m.raft_addr())).await
                else {
                    continue;
                };
                if let Ok(r) = c.status(rpb::StatusRequest {}).await
                    && let Some(g) = r.into_inner().groups.iter().find(|g| g.group == group)
                    && g.leader != 0
                {
                    return g.leader;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader for group {group}\n{}", self.logs());
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

#[derive(Clone)]
struct Acked {
    label: Vec<u8>,
    publish: VerifiedPublish,
}

struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acked: Arc<Mutex<Vec<Acked>>>,
}

fn start_load(clients: Arc<Vec<Client>>, seed: u64) -> Load {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..3u64 {
        let clients = Arc::clone(&clients);
        let acked = Arc::clone(&acked);
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut x = seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut n = 0u64;
            while !*rx.borrow() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let label = format!("user-{:03}@example.com", x % 100).into_bytes();
                let value = format!("w{w}-{n}").into_bytes();
                let key = format!("w{w}-{n}-{seed}");
                n += 1;
                // Retry the same key on every member until one acknowledges it.
                let start = Instant::now();
                let mut attempt = (x % clients.len() as u64) as usize;
                while start.elapsed() < Duration::from_secs(30) {
                    let c = &clients[attempt % clients.len()];
                    attempt += 1;
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        c.publish_with_key(&label, &value, &key),
                    )
                    .await
                    {
                        Ok(Ok(p)) => {
                            acked.lock().unwrap().push(Acked {
                                label: label.clone(),
                                publish: p,
                            });
                            break;
                        }
                        Ok(Err(e)) if e.is_security_event() => {
                            panic!("publish failed verification: {e}")
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }));
    }
    Load { stop, tasks, acked }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_leader_kills() {
    let seed: u64 = match std::env::var("CANDOR_CLUSTER_SEED") {
        Ok(s) => s.parse().expect("CANDOR_CLUSTER_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("cluster seed {seed} (replay with CANDOR_CLUSTER_SEED={seed})");
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(tmp.path());
    for i in 0..MEMBERS {
        cluster.start(i);
    }
    for i in 0..MEMBERS {
        cluster.wait_serving(i).await;
    }
    let config = std::fs::read(tmp.path().join("data1").join("config.bin")).unwrap();
    let token = std::fs::read_to_string(tmp.path().join("keys").join("dev-token")).unwrap();
    let mut clients = Vec::new();
    for m in &cluster.members {
        let pinned = PinnedConfig::from_config_bytes(&config).unwrap();
        clients.push(
            Client::connect(m.url(), pinned)
                .await
                .unwrap()
                .with_token(token.trim())
                .unwrap(),
        );
    }
    // The stateless front door, forwarding to every member.
    let proxy_port = free_port("127.0.0.4");
    let proxy_url = format!("http://127.0.0.4:{proxy_port}");
    let mut proxy_cmd = Command::new(BIN);
    proxy_cmd
        .args([
            "serve",
            "--role",
            "api",
            "--listen",
            &format!("127.0.0.4:{proxy_port}"),
        ])
        .env("CANDOR_LOG", "info")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(tmp.path().join("proxy.stdout.log")).unwrap())
        .stderr(std::fs::File::create(tmp.path().join("proxy.stderr.log")).unwrap());
    for m in &cluster.members {
        proxy_cmd.args(["--upstream", &m.url()]);
    }
    let _proxy = KillOnDrop(proxy_cmd.spawn().expect("spawn candor serve --role api"));
    let pinned = PinnedConfig::from_config_bytes(&config).unwrap();
    let mut proxy_client = None;
    for _ in 0..600 {
        if let Ok(c) = Client::connect(proxy_url.clone(), pinned.clone()).await {
            proxy_client = Some(c.with_token(token.trim()).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    clients.push(
        proxy_client.unwrap_or_else(|| panic!("front door never answered\n{}", cluster.logs())),
    );
    let clients = Arc::new(clients);
    let load = start_load(Arc::clone(&clients), seed);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Kill the leader of shard 0 and bring it back.
    let l = cluster.leader_of(0).await;
    println!("SIGKILL member {l} (leader of shard 0)");
    cluster.kill(l as usize - 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start(l as usize - 1);
    cluster.wait_serving(l as usize - 1).await;

    // Kill the sequencer's leader; time until a surviving member signs the next epoch.
    let l = cluster.leader_of(SEQUENCER_GROUP).await;
    let survivor = &clients[if l == 1 { 1 } else { 0 }];
    let before = survivor.latest_head().await.unwrap().head.epoch;
    println!("SIGKILL member {l} (sequencer leader) at epoch {before}");
    let killed = Instant::now();
    cluster.kill(l as usize - 1);
    let mut failover = None;
    for _ in 0..600 {
        if let Ok(h) = survivor.latest_head().await
            && h.head.epoch > before + 1
        {
            failover = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failover =
        failover.unwrap_or_else(|| panic!("no epoch after failover\n{}", cluster.logs()));
    println!("failover: sequencer leader killed -> next epoch signed in {failover:?}");
    cluster.start(l as usize - 1);
    cluster.wait_serving(l as usize - 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let _ = load.stop.send(true);
    for t in load.tasks {
        t.await.unwrap();
    }
    let acked = load.acked.lock().unwrap().clone();
    println!("{} mutations acknowledged", acked.len());
    assert!(!acked.is_empty());

    // Every SMT merged by its deadline (verifiable evidence), on every member.
    for (i, c) in clients.iter().enumerate() {
        let who = if i < MEMBERS {
            format!("member {}", i + 1)
        } else {
            "front door".into()
        };
        for a in &acked {
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                c.wait_merged(&a.label, &a.publish.smt, Duration::from_millis(100)),
            )
            .await
            .unwrap_or_else(|_| panic!("{who}: wait_merged timed out\n{}", cluster.logs()));
            if let Err(e) = r {
                panic!("{who}: SMT not merged: {e}\n{}", cluster.logs());
            }
        }
    }
    // Histories hold every acknowledged leaf, gap-free (the SDK verifies the chain).
    let mut labels: Vec<Vec<u8>> = acked.iter().map(|a| a.label.clone()).collect();
    labels.sort();
    labels.dedup();
    for label in &labels {
        let h = clients[0].history(label).await.unwrap().history;
        for a in acked.iter().filter(|a| &a.label == label) {
            let v = h
                .versions
                .get(a.publish.version as usize - 1)
                .unwrap_or_else(|| panic!("lost version {}", a.publish.version));
            assert_eq!(v.leaf, a.publish.leaf, "acknowledged leaf replaced");
        }
    }
    // One head per epoch number on every member; the tracker checks consistency.
    let last = clients[0].latest_head().await.unwrap().head.epoch;
    for e in 1..=last {
        let h0 = clients[0].head(e).await.unwrap();
        for c in clients.iter().skip(1) {
            let h = c.head(e).await.unwrap();
            assert_eq!(h.encode(), h0.encode(), "two heads for epoch {e}");
            c.observe_head(&h).await.unwrap();
        }
    }
}

/// Cosignatures are stored through the sequencer's Raft group: an auditor submits to
/// one member, that member is SIGKILLed and its data directory deleted, and the
/// other two serve every cosignature. (An erasure sent to another member is checked
/// on the survivors too: it travels in the shard's log.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosignatures_survive_losing_the_member_that_received_them() {
    use candor_client::auditor::Auditor;
    use candor_core::signed::PublicConfig;
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(tmp.path());
    for i in 0..MEMBERS {
        cluster.start(i);
    }
    for i in 0..MEMBERS {
        cluster.wait_serving(i).await;
    }
    let config = std::fs::read(tmp.path().join("data1").join("config.bin")).unwrap();
    let token = std::fs::read_to_string(tmp.path().join("keys").join("dev-token")).unwrap();
    let pinned = PinnedConfig::from_config_bytes(&config).unwrap();
    let urls: Vec<String> = cluster.members.iter().map(Member::url).collect();
    let connect = |i: usize| {
        let url = urls[i].clone();
        let pinned = pinned.clone();
        let token = token.trim().to_string();
        async move {
            Client::connect(url, pinned)
                .await
                .unwrap()
                .with_token(&token)
                .unwrap()
        }
    };
    // Some epochs with content.
    let writer = connect(0).await;
    for i in 0..5u32 {
        let p = writer
            .publish(format!("user{i}").as_bytes(), b"key")
            .await
            .unwrap();
        writer
            .wait_merged(
                format!("user{i}").as_bytes(),
                &p.smt,
                Duration::from_millis(50),
            )
            .await
            .unwrap();
    }
    // An erasure through member 1 is replicated with the shard's log.
    writer.erase(b"user0", 1).await.unwrap();
    // The auditor follows member 3 (the one it submits to), cosigning every epoch.
    let received = 2;
    let to = connect(received).await;
    let mut auditor = Auditor::new(PublicConfig::decode(&config).unwrap(), auditor_key());
    let reports = auditor.follow(&to, true, None).await.unwrap();
    assert!(reports.len() >= 5, "{} epochs audited", reports.len());
    let cosigned: Vec<u64> = reports
        .iter()
        .filter(|r| r.accepted && r.cosignature.is_some())
        .map(|r| r.epoch)
        .collect();
    assert_eq!(cosigned.len(), reports.len(), "every epoch was cosigned");
    // A resubmission changes nothing.
    let again = reports[0].cosignature.clone().unwrap();
    to.submit_cosignature(&again).await.unwrap();
    drop(to);

    // Lose the member that received them, store and all.
    cluster.kill(received);
    std::fs::remove_dir_all(tmp.path().join(format!("data{}", received + 1))).unwrap();
    let auditor_pub = auditor_key().public_key();
    for i in 0..MEMBERS {
        if i == received {
            continue;
        }
        let c = connect(i).await;
        let h = c.history(b"user0").await.unwrap();
        assert_eq!(h.history.versions[0].value, None, "member {} erased", i + 1);
        for &e in &cosigned {
            let got = c.cosignatures(e).await.unwrap();
            assert_eq!(
                got.iter().filter(|g| g.auditor_key == auditor_pub).count(),
                1,
                "member {} serves the cosignature of epoch {e}",
                i + 1
            );
        }
    }
    println!(
        "{} cosignatures served by the two survivors after member {} was lost",
        cosigned.len(),
        received + 1
    );
}
