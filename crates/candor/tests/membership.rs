//! Online membership changes with real `candor serve --role all` processes on
//! 127.0.0.N, driven by the `candor cluster` CLI and checked through the SDK.
//!
//! Three members start and take publishes. A fourth member starts outside the
//! membership (it must not claim to serve), `cluster add-member 4` makes it a
//! voter of every group, and its API then serves heads covering every publish
//! with verifying lookups. `cluster remove-member 1` takes member 1 out of every
//! group (its process is then killed); publishes through member 4 keep merging.
//! Finally shard 1's replica moves from member 2 to a fifth member (publishes
//! keep merging on the members that hold every shard) and back, checked through
//! `cluster status`, and publishes then merge on every member.
//!
//! No timing is asserted: every wait is a bounded poll. The seed of the labels
//! and values is printed and replayable with `CANDOR_MEMBERSHIP_SEED`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use candor_client::{Client, PinnedConfig, VerifiedPublish};
use serde_json::Value;
use tonic_health::pb::health_check_response::ServingStatus;

mod common;

use common::{BIN, SEQUENCER_GROUP, free_port, keygen};

const SHARDS: u64 = 4;

struct Member {
    ip: String,
    api_port: u16,
    raft_port: u16,
    child: Option<Child>,
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
    fn new(dir: &Path, n: u64) -> Cluster {
        keygen(&dir.join("keys"));
        let members = (1..=n)
            .map(|id| {
                let ip = format!("127.0.0.{id}");
                Member {
                    api_port: free_port(&ip),
                    raft_port: free_port(&ip),
                    ip,
                    child: None,
                }
            })
            .collect();
        Cluster {
            dir: dir.to_path_buf(),
            members,
        }
    }

    fn m(&self, id: u64) -> &Member {
        &self.members[id as usize - 1]
    }

    /// Start member `id` with the member list `list` (which must name it).
    fn start(&mut self, id: u64, list: &[u64], bootstrap: bool) {
        let member_args: Vec<String> = list
            .iter()
            .flat_map(|&i| {
                [
                    "--member".to_string(),
                    format!("{i}={}", self.m(i).raft_addr()),
                ]
            })
            .collect();
        let log = |name: &str| {
            std::fs::File::create(self.dir.join(format!("member{id}.{name}.log"))).unwrap()
        };
        let m = self.m(id);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--role", "all", "--dev-token", "--data-dir"])
            .arg(self.dir.join(format!("data{id}")))
            .arg("--keys-dir")
            .arg(self.dir.join("keys"))
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &format!("{}:{}", m.ip, m.api_port)])
            .args(["--raft-listen", &m.raft_addr()])
            .args(["--epoch-interval", "300ms", "--shards", &SHARDS.to_string()])
            .args(&member_args)
            .env("CANDOR_LOG", "info,openraft=warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"));
        if bootstrap {
            cmd.arg("--bootstrap");
        }
        let child = cmd.spawn().expect("spawn candor serve");
        self.members[id as usize - 1].child = Some(child);
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.members[id as usize - 1].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn logs(&self) -> String {
        common::tail_logs(&self.dir, 30)
    }

    fn check_alive(&mut self, id: u64) {
        if let Some(c) = self.members[id as usize - 1].child.as_mut()
            && let Some(status) = c.try_wait().unwrap()
        {
            panic!("member {id} exited with {status}\n{}", self.logs());
        }
    }

    async fn health(&self, id: u64) -> Option<ServingStatus> {
        common::health(&self.m(id).url()).await
    }

    async fn wait_serving(&mut self, id: u64) {
        for _ in 0..1800 {
            self.check_alive(id);
            if self.health(id).await == Some(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("member {id} never became SERVING\n{}", self.logs());
    }

    /// Wait until member `id`'s API answers health checks (with any status).
    async fn wait_listening(&mut self, id: u64) -> ServingStatus {
        for _ in 0..600 {
            self.check_alive(id);
            if let Some(s) = self.health(id).await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("member {id} never answered health checks\n{}", self.logs());
    }

    async fn client(&self, id: u64) -> Client {
        let config = std::fs::read(self.dir.join("data1").join("config.bin")).unwrap();
        let token = std::fs::read_to_string(self.dir.join("keys").join("dev-token")).unwrap();
        Client::connect(
            self.m(id).url(),
            PinnedConfig::from_config_bytes(&config).unwrap(),
        )
        .await
        .unwrap()
        .with_token(token.trim())
        .unwrap()
    }

    /// `candor cluster ARGS --admin (member admin_of) --json`: exit code and JSON.
    async fn cli(&self, admin_of: u64, args: &[&str]) -> (i32, Value, String) {
        let mut cmd = Command::new(BIN);
        cmd.arg("cluster")
            .args(args)
            .args(["--admin", &self.m(admin_of).raft_addr(), "--json"]);
        let line = format!("candor cluster {}", args.join(" "));
        println!("$ {line} --admin {}", self.m(admin_of).raft_addr());
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let json: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        // With --json a failure is a JSON object on stdout: keep both streams.
        let err = if json.get("error").is_some() {
            format!("{stderr}{stdout}")
        } else {
            stderr
        };
        (out.status.code().unwrap_or(-1), json, err)
    }

    /// `candor cluster ARGS --admin (member admin_of)`, human output: exit code, stdout.
    async fn cli_text(&self, admin_of: u64, args: &[&str]) -> (i32, String) {
        let mut cmd = Command::new(BIN);
        cmd.arg("cluster")
            .args(args)
            .args(["--admin", &self.m(admin_of).raft_addr()]);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }

    /// `cluster status` through `admin_of`: group → (voters, learners, leader).
    async fn status(&self, admin_of: u64) -> Vec<(u64, BTreeSet<u64>, BTreeSet<u64>, u64)> {
        let (code, json, err) = self.cli(admin_of, &["status"]).await;
        assert_eq!(code, 0, "cluster status failed: {err}\n{}", self.logs());
        let ids = |v: &Value| -> BTreeSet<u64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        };
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["group"].as_u64().unwrap(),
                    ids(&g["voters"]),
                    ids(&g["learners"]),
                    g["leader"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Poll `cluster status` until every group satisfies `want` (bounded).
    async fn wait_status(
        &self,
        admin_of: u64,
        what: &str,
        want: impl Fn(u64, &BTreeSet<u64>, &BTreeSet<u64>) -> bool,
    ) {
        let mut last = Vec::new();
        for _ in 0..100 {
            last = self.status(admin_of).await;
            if !last.is_empty()
                && last
                    .iter()
                    .all(|(g, v, l, leader)| *leader != 0 && want(*g, v, l))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("status never showed {what}: {last:?}\n{}", self.logs());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 1..=self.members.len() as u64 {
            self.kill(i);
        }
    }
}

struct Published {
    label: Vec<u8>,
    value: Vec<u8>,
    publish: VerifiedPublish,
}

/// Publish `n` seeded labels through `clients` (round robin, retrying the same
/// idempotency key on the next client until one acknowledges).
async fn publish_some(clients: &[&Client], seed: u64, round: u64, n: u64) -> Vec<Published> {
    let mut out = Vec::new();
    let mut x = seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let label = format!("user-{:03}@example.com", x % 40).into_bytes();
        let value = format!("r{round}-{i}-{x:x}").into_bytes();
        let key = format!("r{round}-{i}-{seed}");
        let mut done = None;
        for attempt in 0..60 {
            let c = clients[(i as usize + attempt) % clients.len()];
            match tokio::time::timeout(
                Duration::from_secs(10),
                c.publish_with_key(&label, &value, &key),
            )
            .await
            {
                Ok(Ok(p)) => {
                    done = Some(p);
                    break;
                }
                Ok(Err(e)) if e.is_security_event() => panic!("publish failed verification: {e}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let publish =
            done.unwrap_or_else(|| panic!("publish {i} of round {round} never acknowledged"));
        out.push(Published {
            label,
            value,
            publish,
        });
    }
    out
}

/// Every publish is merged (verified evidence) and the label's latest value
/// looks up (verified) on `client`, within bounded waits.
async fn verify_all(
    client: &Client,
    who: &str,
    published: &[Published],
    logs: impl Fn() -> String,
) {
    for p in published {
        let r = tokio::time::timeout(
            Duration::from_secs(90),
            client.wait_merged(&p.label, &p.publish.smt, Duration::from_millis(100)),
        )
        .await
        .unwrap_or_else(|_| panic!("{who}: wait_merged timed out\n{}", logs()));
        if let Err(e) = r {
            panic!("{who}: SMT not merged: {e}\n{}", logs());
        }
    }
    // The latest publish of each label is what a lookup returns.
    let mut latest: std::collections::BTreeMap<&[u8], &Published> = Default::default();
    for p in published {
        let e = latest.entry(&p.label).or_insert(p);
        if p.publish.version > e.publish.version {
            *e = p;
        }
    }
    for (label, p) in latest {
        let l = client
            .lookup(label, None)
            .await
            .unwrap_or_else(|e| panic!("{who}: lookup: {e}\n{}", logs()));
        let v = l.version().expect("published label is found");
        assert!(v >= p.publish.version, "{who}: lookup went back a version");
        if v == p.publish.version {
            assert_eq!(l.value(), Some(&p.value[..]), "{who}: wrong value");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_remove_and_move_members_online() {
    let seed: u64 = match std::env::var("CANDOR_MEMBERSHIP_SEED") {
        Ok(s) => s.parse().expect("CANDOR_MEMBERSHIP_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("membership seed {seed} (replay with CANDOR_MEMBERSHIP_SEED={seed})");
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(tmp.path(), 5);
    let all_groups: BTreeSet<u64> = (0..SHARDS).chain([SEQUENCER_GROUP]).collect();

    // Three founding members.
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3], id == 1);
    }
    for id in 1..=3 {
        cluster.wait_serving(id).await;
    }
    let c1 = cluster.client(1).await;
    let c2 = cluster.client(2).await;
    let c3 = cluster.client(3).await;
    let mut published = publish_some(&[&c1, &c2, &c3], seed, 1, 12).await;
    verify_all(&c2, "member 2", &published, || cluster.logs()).await;

    // A fourth member outside the membership: running, idle, not ready.
    cluster.start(4, &[1, 2, 3, 4], false);
    let s = cluster.wait_listening(4).await;
    assert_ne!(
        s,
        ServingStatus::Serving,
        "a member outside every group claims to serve"
    );
    let (code, json, err) = cluster.cli(4, &["status", "--local"]).await;
    assert_eq!(code, 0, "{err}");
    for g in json["groups"].as_array().unwrap() {
        assert!(
            g["voters"].as_array().unwrap().is_empty(),
            "member 4 is not in any group yet: {g}"
        );
    }
    assert_ne!(cluster.health(4).await, Some(ServingStatus::Serving));

    // Add it through member 2 (which forwards every group it does not lead).
    let raft4 = cluster.m(4).raft_addr();
    let (code, json, err) = cluster
        .cli(2, &["add-member", "4", "--raft-addr", &raft4])
        .await;
    assert_eq!(code, 0, "add-member failed: {err}\n{}", cluster.logs());
    let groups = json["groups"].as_array().unwrap();
    assert_eq!(groups.len(), all_groups.len(), "{json}");
    for g in groups {
        assert!(
            g["voters"].as_array().unwrap().iter().any(|v| v == 4),
            "{g}"
        );
    }
    // Idempotent: again, nothing changes.
    let (code, json, err) = cluster
        .cli(3, &["add-member", "4", "--raft-addr", &raft4])
        .await;
    assert_eq!(code, 0, "repeated add-member failed: {err}");
    assert!(
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["changed"] == false),
        "{json}"
    );
    let want: BTreeSet<u64> = [1, 2, 3, 4].into();
    cluster
        .wait_status(1, "member 4 a voter of every group", |_, v, l| {
            *v == want && l.is_empty()
        })
        .await;
    let (code, text) = cluster.cli_text(1, &["status"]).await;
    assert_eq!(code, 0);
    println!("{text}");
    // Its API now serves heads covering every earlier publish, with verified lookups.
    cluster.wait_serving(4).await;
    let c4 = cluster.client(4).await;
    verify_all(&c4, "member 4", &published, || cluster.logs()).await;

    // Remove member 1 (the bootstrap member) through member 4, then stop it.
    let (code, json, err) = cluster.cli(4, &["remove-member", "1"]).await;
    assert_eq!(code, 0, "remove-member failed: {err}\n{}", cluster.logs());
    assert!(
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| !g["voters"].as_array().unwrap().iter().any(|v| v == 1)),
        "{json}"
    );
    cluster.kill(1);
    let want: BTreeSet<u64> = [2, 3, 4].into();
    cluster
        .wait_status(4, "member 1 gone from every group", |_, v, l| {
            *v == want && l.is_empty()
        })
        .await;
    // Removing it again: it is unknown now (exit 2, NOT_FOUND), nothing changes.
    let (code, _, err) = cluster.cli(3, &["remove-member", "1"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NotFound"), "{err}");
    // A malformed address is refused by the server (INVALID_ARGUMENT, exit 2).
    let (code, _, err) = cluster
        .cli(2, &["add-member", "9", "--raft-addr", "https://x:1"])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("InvalidArgument"), "{err}");

    let round2 = publish_some(&[&c4], seed, 2, 12).await;
    published.extend(round2);
    verify_all(&c4, "member 4", &published, || cluster.logs()).await;
    verify_all(&c2, "member 2", &published, || cluster.logs()).await;

    // Move shard 1's replica from member 2 to a fifth member, and back.
    cluster.start(5, &[2, 3, 4, 5], false);
    cluster.wait_listening(5).await;
    let raft5 = cluster.m(5).raft_addr();
    let (code, json, err) = cluster
        .cli(
            3,
            &[
                "move-replica",
                "--group",
                "1",
                "--from",
                "2",
                "--to",
                "5",
                "--to-raft-addr",
                &raft5,
            ],
        )
        .await;
    assert_eq!(code, 0, "move-replica failed: {err}\n{}", cluster.logs());
    assert_eq!(
        json["groups"][0]["voters"],
        serde_json::json!([3, 4, 5]),
        "{json}"
    );
    cluster
        .wait_status(3, "shard 1 on members 3, 4, 5", |g, v, _| {
            if g == 1 {
                *v == BTreeSet::from([3, 4, 5])
            } else {
                *v == BTreeSet::from([2, 3, 4])
            }
        })
        .await;
    // Member 5 holds one group only: it must not claim to serve.
    assert_ne!(cluster.health(5).await, Some(ServingStatus::Serving));
    // Members 3 and 4 still hold every shard: publishes keep merging there (a
    // sequencer leader without shard 1 hands the sequencer over). Member 2's
    // reads stay at the last epoch it can prove until its replica is back.
    let round = publish_some(&[&c3, &c4], seed, 4, 8).await;
    published.extend(round);
    for (c, who) in [(&c3, "member 3"), (&c4, "member 4")] {
        verify_all(c, who, &published, || cluster.logs()).await;
    }
    let (code, json, err) = cluster
        .cli(
            4,
            &["move-replica", "--group", "1", "--from", "5", "--to", "2"],
        )
        .await;
    assert_eq!(
        code,
        0,
        "move-replica back failed: {err}\n{}",
        cluster.logs()
    );
    assert_eq!(
        json["groups"][0]["voters"],
        serde_json::json!([2, 3, 4]),
        "{json}"
    );
    cluster
        .wait_status(2, "every group on members 2, 3, 4", |_, v, l| {
            *v == BTreeSet::from([2, 3, 4]) && l.is_empty()
        })
        .await;
    cluster.kill(5);

    let round3 = publish_some(&[&c2, &c3, &c4], seed, 3, 12).await;
    published.extend(round3);
    for (c, who) in [(&c2, "member 2"), (&c3, "member 3"), (&c4, "member 4")] {
        verify_all(c, who, &published, || cluster.logs()).await;
    }
    // One head per epoch on every remaining member.
    let last = c4.latest_head().await.unwrap().head.epoch;
    for e in 1..=last {
        let h = c4.head(e).await.unwrap();
        for c in [&c2, &c3] {
            if let Ok(o) = c.head(e).await {
                assert_eq!(o.encode(), h.encode(), "two heads for epoch {e}");
            }
        }
    }
}
