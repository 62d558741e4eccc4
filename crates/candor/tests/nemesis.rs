//! The multi-host fault test (#19), run by `tests/nemesis/run.sh` (root, network
//! namespaces): five hosts as network namespaces on a bridge, three members
//! (`candor serve --role all`) and two front doors (`--role api`); load clients
//! in the root namespace publish and read through the front doors, recording every
//! request and answer; a seeded nemesis mixes faults one at a time:
//!
//! * `partition`: a member cut off from every other host (iptables, both ways);
//! * `inbound-drop`: the sequencer leader drops everything coming in (asymmetric);
//! * `kill`: kill -9 and restart;
//! * `pause`: SIGSTOP for longer than an election timeout, then SIGCONT;
//! * `slow-link`: a `tc` tbf rate limit with a queue plus 5 % random drops
//!   (iptables `statistic`; this kernel has no netem);
//! * `disk-full`: the member whose data directory is a small tmpfs has it filled,
//!   then freed (the member is restarted if it stopped).
//!
//! After the run everything is healed and a checker reads the history:
//! * no acknowledged publish is lost: every SMT is in its label's history;
//! * every SMT is honoured by its deadline (the rule chosen: faults hit one host
//!   at a time, so a quorum was always available; the maximum merge delay is 30 s,
//!   longer than any single fault, so a promise broken is a bug, never excused);
//! * one signed head per epoch across all members (byte-identical);
//! * every head extends the previous (a full audit from epoch 1 verifies);
//! * per-label versions are gap-free (verified histories);
//! * no client saw the epoch go back through its front door;
//! * no member presents an old head as the latest: a prober in the root
//!   namespace (which the faults never cut off) asks every member directly for
//!   its latest epoch every 200 ms, and a member may answer only `UNAVAILABLE`
//!   or an epoch at most [`MAX_PROBE_LAG`] behind the newest any member has
//!   answered. Exempt: the first [`PROBE_GRACE_MS`] of a fault on the member
//!   (a member cut off needs 2 epoch intervals and an election timeout to
//!   notice), and a slow link until [`PROBE_GRACE_MS`] after it heals (its
//!   replicas are legitimately a little behind, and it can still reach its
//!   quorum). That covers a member cut off by a partition, one that resumes
//!   from a pause, restarts, or catches up after any fault. The largest lag of
//!   any member's answer is printed.
//!
//! Also printed, not asserted: the longest windows in which no client had a
//! publish acknowledged; whether the sequencer leadership moved off a
//! member under inbound drops or a slow link, and after how long (the
//! step-aside rule of `candor_raft`); the WARN lines per process per second and
//! the most frequent kinds; where the largest prober lag happened.
//!
//! The seed (`CANDOR_NEMESIS_SEED`) and every fault are printed; the duration is
//! `CANDOR_NEMESIS_SECS` (default 90); `CANDOR_NEMESIS_FAULTS` (a comma-separated
//! list of the kinds above) restricts the mix. The history is written as JSON lines to
//! `$CANDOR_NEMESIS_DIR` (default the system temp dir) for study, with the
//! processes' logs beside it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candor_client::{Client, ClientError, PinnedConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

mod common;
use common::{BIN, keygen};

const MEMBERS: usize = 3;
const FRONT_DOORS: usize = 2;
const SUBNET: &str = "10.77.0";
const API_PORT: u16 = 8700;
const RAFT_PORT: u16 = 8701;
/// The member whose data directory is a small tmpfs (`disk-full`).
const SMALL_DISK_MEMBER: usize = 2;
/// How far behind the newest epoch a member's latest answer may be (epochs of
/// 500 ms; a cut-off member must stop within 2 epoch intervals of its last
/// head).
const MAX_PROBE_LAG: u64 = 3;
/// From when, after a fault on a member starts, the bound above applies to it
/// (2 epoch intervals, one election timeout and a health poll, with room for a
/// loaded CI).
const PROBE_GRACE_MS: u128 = 2_000;

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Hosts as network namespaces on one bridge; removed on drop.
struct Net {
    tag: String,
    hosts: usize,
}

impl Net {
    fn ns(&self, i: usize) -> String {
        format!("kt{}h{i}", self.tag)
    }
    fn ip(i: usize) -> String {
        format!("{SUBNET}.{}", i + 1)
    }
    fn bridge(&self) -> String {
        format!("kb{}", self.tag)
    }

    /// What follows `prefix` and a four-hex-digit tag in `name`, if `name` has them
    /// (this test names its namespaces `kt<tag>h<i>` and its bridges `kb<tag>`).
    fn after_tag<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
        let rest = name.strip_prefix(prefix)?;
        let tag = rest.get(..4)?;
        tag.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| &rest[4..])
    }

    /// Removes what an earlier run killed before its clean-up left behind: its
    /// namespaces (and any process still in them), its bridge, its small disk.
    /// A leftover bridge still routes the subnet, so every connection to a new
    /// host would be refused. Two runs on one host at once are not supported
    /// (they share the subnet).
    fn clear_leftovers() {
        let list = sh(&["ip", "netns", "list"]);
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let host = Net::after_tag(name, "kt").and_then(|r| r.strip_prefix('h'));
            if !host.is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())) {
                continue;
            }
            eprintln!("!!! nemesis: removing namespace {name} left by an earlier run !!!");
            let pids = sh(&["ip", "netns", "pids", name]);
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                sh(&["kill", "-9", pid]);
            }
            sh(&["ip", "netns", "del", name]);
        }
        let links = sh(&["ip", "-o", "link", "show", "type", "bridge"]);
        for line in String::from_utf8_lossy(&links.stdout).lines() {
            let name = line.split(": ").nth(1).unwrap_or_default();
            if Net::after_tag(name, "kb") == Some("") {
                eprintln!("!!! nemesis: removing bridge {name} left by an earlier run !!!");
                sh(&["ip", "link", "del", name]);
            }
        }
        let held = sh(&["ip", "-o", "addr", "show", "to", &format!("{SUBNET}.0/24")]);
        let held = String::from_utf8_lossy(&held.stdout);
        assert!(
            held.trim().is_empty(),
            "another interface holds an address in {SUBNET}.0/24, which this test needs:\n{held}"
        );
        let tmp = std::env::temp_dir();
        let small = format!("data{}", SMALL_DISK_MEMBER + 1);
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for line in mounts.lines() {
            let mut f = line.split_whitespace();
            let (Some("tmpfs"), Some(at)) = (f.next(), f.next()) else {
                continue;
            };
            let at = std::path::Path::new(at);
            if at.ends_with(&small) && at.parent().and_then(|p| p.parent()) == Some(tmp.as_path()) {
                eprintln!(
                    "!!! nemesis: unmounting {} left by an earlier run !!!",
                    at.display()
                );
                sh(&["umount", "-l", &at.to_string_lossy()]);
            }
        }
    }

    fn new(hosts: usize) -> Net {
        Net::clear_leftovers();
        let tag = format!("{:04x}", std::process::id() % 0xffff);
        let net = Net { tag, hosts };
        let br = net.bridge();
        must(&["ip", "link", "add", &br, "type", "bridge"]);
        must(&["ip", "addr", "add", &format!("{SUBNET}.254/24"), "dev", &br]);
        must(&["ip", "link", "set", &br, "up"]);
        for i in 0..hosts {
            let ns = net.ns(i);
            let (outer, inner) = (format!("kv{}{i}", net.tag), format!("ki{}{i}", net.tag));
            must(&["ip", "netns", "add", &ns]);
            must(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            must(&["ip", "link", "set", &inner, "netns", &ns]);
            must(&["ip", "link", "set", &outer, "master", &br]);
            must(&["ip", "link", "set", &outer, "up"]);
            must(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", &inner, "name", "eth0",
            ]);
            must(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{}/24", Net::ip(i)),
                "dev",
                "eth0",
            ]);
            must(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
            ]);
            must(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        net
    }

    fn exec(&self, i: usize, args: &[&str]) -> std::process::Output {
        let ns = self.ns(i);
        let mut v = vec!["ip", "netns", "exec", ns.as_str()];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Every fault on host `i` undone.
    fn heal(&self, i: usize) {
        self.exec(i, &["iptables", "-F"]);
        self.exec(i, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            sh(&["ip", "netns", "del", &self.ns(i)]);
        }
        sh(&["ip", "link", "del", &self.bridge()]);
    }
}

struct Proc {
    name: String,
    child: Option<Child>,
    args: Vec<String>,
    host: usize,
    runs: u32,
}

struct Cluster {
    net: Net,
    dir: PathBuf,
    procs: Vec<Proc>,
    small_disk: PathBuf,
}

impl Cluster {
    fn start(&mut self, p: usize) {
        let pr = &mut self.procs[p];
        pr.runs += 1;
        let log = |kind: &str| {
            std::fs::File::create(self.dir.join(format!("{}.{}.{kind}.log", pr.name, pr.runs)))
                .unwrap()
        };
        let ns = self.net.ns(pr.host);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, BIN])
            .args(&pr.args)
            // The default filter (as users run it): the WARN volume is measured below.
            .env("CANDOR_LOG", "info,openraft=warn")
            .env("CANDOR_MAX_MERGE_DELAY_MS", "30000")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .expect("spawn candor");
        pr.child = Some(child);
    }

    fn kill(&mut self, p: usize) {
        if let Some(mut c) = self.procs[p].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, p: usize, sig: &str) {
        if let Some(c) = &self.procs[p].child {
            sh(&["kill", sig, &c.id().to_string()]);
        }
    }

    /// Restarts a member whose process exited (e.g. on a full disk).
    fn restart_dead(&mut self) {
        for p in 0..self.procs.len() {
            let dead = match self.procs[p].child.as_mut() {
                Some(c) => c.try_wait().ok().flatten().is_some(),
                None => true,
            };
            if dead {
                println!("  restarting {} (it had stopped)", self.procs[p].name);
                self.procs[p].child = None;
                self.start(p);
            }
        }
    }

    fn tail_logs(&self) -> String {
        common::tail_logs(&self.dir, 15)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in 0..self.procs.len() {
            self.signal(p, "-CONT");
            self.kill(p);
        }
        sh(&["umount", "-l", self.small_disk.to_str().unwrap()]);
    }
}

/// One recorded operation.
#[derive(Clone, Debug)]
struct Op {
    client: usize,
    at_ms: u128,
    kind: &'static str,
    label: String,
    outcome: String,
}

#[derive(Clone)]
struct Acked {
    label: String,
    publish: candor_client::VerifiedPublish,
}

fn member_url(i: usize) -> String {
    format!("http://{}:{API_PORT}", Net::ip(i))
}

async fn serving(url: &str) -> bool {
    matches!(
        common::health(url).await,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    )
}

/// The sequencer's leader as some member reports it (a node id), if any.
/// Waits out `hold`; if `target` led the sequencer group when the fault
/// began (`led`), returns how soon the other members were seen following
/// another leader (the target itself may still believe it leads).
async fn moved_off(target: usize, led: bool, hold: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut moved = None;
    while t.elapsed() < hold {
        tokio::time::sleep(Duration::from_millis(250).min(hold.saturating_sub(t.elapsed()))).await;
        if led
            && moved.is_none()
            && sequencer_leader_seen_by((0..MEMBERS).filter(|&m| m != target))
                .await
                .is_some_and(|l| l != target)
        {
            moved = Some(t.elapsed());
        }
    }
    moved
}

async fn sequencer_leader() -> Option<usize> {
    sequencer_leader_seen_by(0..MEMBERS).await
}

/// The sequencer group's leader as the first of `members` that answers sees it.
async fn sequencer_leader_seen_by(members: impl Iterator<Item = usize>) -> Option<usize> {
    use candor_proto::raft::v1 as rpb;
    use candor_proto::raft::v1::raft_transport_client::RaftTransportClient;
    for i in members {
        let addr = format!("http://{}:{RAFT_PORT}", Net::ip(i));
        let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(1), RaftTransportClient::connect(addr)).await
        else {
            continue;
        };
        if let Ok(Ok(r)) =
            tokio::time::timeout(Duration::from_secs(1), c.status(rpb::StatusRequest {})).await
            && let Some(g) = r
                .into_inner()
                .groups
                .iter()
                .find(|g| g.group == common::SEQUENCER_GROUP)
            && g.leader != 0
        {
            return Some(g.leader as usize - 1);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root and network namespaces: run by tests/nemesis/run.sh"]
async fn nemesis_multi_host() {
    if !sh(&["id", "-u"]).stdout.starts_with(b"0") {
        panic!("the nemesis test needs root (network namespaces, iptables, tc, mount)");
    }
    let seed: u64 = match std::env::var("CANDOR_NEMESIS_SEED") {
        Ok(s) => s.parse().expect("CANDOR_NEMESIS_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    let secs: u64 = std::env::var("CANDOR_NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    println!("nemesis seed {seed} (replay with CANDOR_NEMESIS_SEED={seed}), {secs} s of faults");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    keygen(&dir.join("keys"));
    let net = Net::new(MEMBERS + FRONT_DOORS);
    let small_disk = dir.join(format!("data{}", SMALL_DISK_MEMBER + 1));
    std::fs::create_dir_all(&small_disk).unwrap();
    must(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=256m",
        "tmpfs",
        small_disk.to_str().unwrap(),
    ]);

    let member_args: Vec<String> = (0..MEMBERS)
        .flat_map(|i| {
            [
                "--member".to_string(),
                format!("{}={}:{RAFT_PORT}", i + 1, Net::ip(i)),
            ]
        })
        .collect();
    let mut procs = Vec::new();
    for i in 0..MEMBERS {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--role".into(),
            "all".into(),
            "--dev-token".into(),
            "--insecure".into(),
            "--data-dir".into(),
            dir.join(format!("data{}", i + 1)).display().to_string(),
            "--keys-dir".into(),
            dir.join("keys").display().to_string(),
            "--node-id".into(),
            (i + 1).to_string(),
            "--listen".into(),
            format!("{}:{API_PORT}", Net::ip(i)),
            "--raft-listen".into(),
            format!("{}:{RAFT_PORT}", Net::ip(i)),
            "--epoch-interval".into(),
            "500ms".into(),
            "--shards".into(),
            "4".into(),
        ];
        args.extend(member_args.iter().cloned());
        if i == 0 {
            args.push("--bootstrap".into());
        }
        procs.push(Proc {
            name: format!("member{}", i + 1),
            child: None,
            args,
            host: i,
            runs: 0,
        });
    }
    for f in 0..FRONT_DOORS {
        let host = MEMBERS + f;
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--role".into(),
            "api".into(),
            "--insecure".into(),
            "--listen".into(),
            format!("{}:{API_PORT}", Net::ip(host)),
        ];
        for i in 0..MEMBERS {
            args.push("--upstream".into());
            args.push(member_url(i));
        }
        procs.push(Proc {
            name: format!("frontdoor{}", f + 1),
            child: None,
            args,
            host,
            runs: 0,
        });
    }
    let mut cluster = Cluster {
        net,
        dir: dir.clone(),
        procs,
        small_disk,
    };
    for p in 0..cluster.procs.len() {
        cluster.start(p);
    }
    for i in 0..MEMBERS + FRONT_DOORS {
        let url = member_url(i);
        let mut ok = false;
        for _ in 0..600 {
            if serving(&url).await {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "{url} never became SERVING\n{}", cluster.tail_logs());
    }
    let config = std::fs::read(dir.join("data1/config.bin")).unwrap();
    let token = std::fs::read_to_string(dir.join("keys/dev-token")).unwrap();
    let pin = || PinnedConfig::from_config_bytes(&config).unwrap();
    let connect = |url: String| {
        let pin = pin();
        let token = token.trim().to_string();
        async move {
            Client::connect(url, pin)
                .await
                .unwrap()
                .with_token(&token)
                .unwrap()
        }
    };

    // Load: four clients, two per front door, each recording everything.
    let start = Instant::now();
    let history: Arc<Mutex<Vec<Op>>> = Arc::new(Mutex::new(Vec::new()));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(Vec::new()));
    let violations: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for k in 0..4usize {
        let client = connect(member_url(MEMBERS + k % FRONT_DOORS)).await;
        let (history, acked, violations) = (
            Arc::clone(&history),
            Arc::clone(&acked),
            Arc::clone(&violations),
        );
        let stop = stop_rx.clone();
        let mut crng = StdRng::seed_from_u64(seed ^ (k as u64 + 1));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut last_epoch = 0u64;
            let record = |kind: &'static str, label: String, outcome: String| {
                history.lock().unwrap().push(Op {
                    client: k,
                    at_ms: start.elapsed().as_millis(),
                    kind,
                    label,
                    outcome,
                })
            };
            // A failed call is an outcome; one that failed verification is also a violation.
            let failed = |e: &candor_client::ClientError| {
                if e.is_security_event() {
                    violations.lock().unwrap().push(format!("client {k}: {e}"));
                }
                format!("error {e}")
            };
            while !*stop.borrow() {
                n += 1;
                let label = format!("user{}", crng.random_range(0..40u32));
                let value = format!("c{k}-{n}");
                let r = tokio::time::timeout(
                    Duration::from_secs(20),
                    client.publish(label.as_bytes(), value.as_bytes()),
                )
                .await;
                let outcome = match r {
                    Ok(Ok(p)) => {
                        let o = format!("ok v{}", p.version);
                        acked.lock().unwrap().push(Acked {
                            label: label.clone(),
                            publish: p,
                        });
                        o
                    }
                    Ok(Err(e)) => failed(&e),
                    Err(_) => "timeout".into(),
                };
                record("publish", label.clone(), outcome);
                if n.is_multiple_of(4) {
                    let r =
                        tokio::time::timeout(Duration::from_secs(10), client.latest_head()).await;
                    let outcome = match r {
                        Ok(Ok(h)) => {
                            if h.head.epoch < last_epoch {
                                violations.lock().unwrap().push(format!(
                                    "client {k}: epoch {} after {last_epoch}",
                                    h.head.epoch
                                ));
                            }
                            last_epoch = last_epoch.max(h.head.epoch);
                            format!("epoch {}", h.head.epoch)
                        }
                        Ok(Err(e)) => failed(&e),
                        Err(_) => "timeout".into(),
                    };
                    record("latest", String::new(), outcome);
                }
            }
        }));
    }

    // The prober: every member's own latest epoch, straight from the root
    // namespace, as `epoch N`, `error <code>` or `timeout`.
    for i in 0..MEMBERS {
        let (history, stop) = (Arc::clone(&history), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            use candor_proto::candor::v1 as pb;
            use candor_proto::candor::v1::key_transparency_client::KeyTransparencyClient;
            let channel = tonic::transport::Endpoint::from_shared(member_url(i))
                .unwrap()
                .connect_timeout(Duration::from_millis(500))
                .connect_lazy();
            let mut c = KeyTransparencyClient::new(channel);
            while !*stop.borrow() {
                let r = tokio::time::timeout(
                    Duration::from_secs(1),
                    c.get_latest_epoch(pb::GetLatestEpochRequest {}),
                )
                .await;
                let outcome = match r {
                    // Unverified: only the epoch's position matters here (the
                    // load clients verify every head they are served).
                    Ok(Ok(h)) => format!("epoch {}", h.into_inner().epoch),
                    Ok(Err(st)) => format!("error {:?}", st.code()),
                    Err(_) => "timeout".into(),
                };
                history.lock().unwrap().push(Op {
                    client: 100 + i,
                    at_ms: start.elapsed().as_millis(),
                    kind: "member-latest",
                    label: format!("member{}", i + 1),
                    outcome,
                });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    // The nemesis: one fault at a time.
    let all_faults = [
        "partition",
        "inbound-drop",
        "kill",
        "pause",
        "slow-link",
        "disk-full",
    ];
    // `CANDOR_NEMESIS_FAULTS=slow-link,pause` studies some kinds alone.
    let faults: Vec<&str> = match std::env::var("CANDOR_NEMESIS_FAULTS") {
        Ok(only) => all_faults
            .into_iter()
            .filter(|f| only.split(',').any(|o| o.trim() == *f))
            .collect(),
        Err(_) => all_faults.to_vec(),
    };
    assert!(
        !faults.is_empty(),
        "CANDOR_NEMESIS_FAULTS names no fault kind"
    );
    let mut made: BTreeMap<&str, u32> = BTreeMap::new();
    // Every fault: its kind, member, start and end (ms).
    let mut faults_made: Vec<Fault> = Vec::new();
    // (fault, whether its target led the sequencer group, when leadership left it).
    let mut handovers: Vec<(&str, bool, Option<Duration>)> = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(crng_range(&mut rng, 1500, 3000))).await;
        let fault = faults[rng.random_range(0..faults.len())];
        let target = match fault {
            // On the sequencer leader, where it costs epochs (a slow link half the
            // time: whether the leadership moves off it is reported).
            "inbound-drop" => sequencer_leader()
                .await
                .unwrap_or_else(|| rng.random_range(0..MEMBERS)),
            "slow-link" if rng.random_bool(0.5) => sequencer_leader()
                .await
                .unwrap_or_else(|| rng.random_range(0..MEMBERS)),
            "disk-full" => SMALL_DISK_MEMBER,
            _ => rng.random_range(0..MEMBERS),
        };
        let hold = Duration::from_millis(crng_range(&mut rng, 3000, 7000));
        println!(
            "  [{:>5.1}s] {fault} on member{} for {:.1}s",
            start.elapsed().as_secs_f64(),
            target + 1,
            hold.as_secs_f64()
        );
        *made.entry(fault).or_default() += 1;
        let fault_started = start.elapsed().as_millis();
        let others = |t: usize| (0..MEMBERS + FRONT_DOORS).filter(move |&i| i != t);
        match fault {
            "partition" => {
                for o in others(target) {
                    let ip = Net::ip(o);
                    cluster.net.exec(
                        target,
                        &["iptables", "-A", "INPUT", "-s", &ip, "-j", "DROP"],
                    );
                    cluster.net.exec(
                        target,
                        &["iptables", "-A", "OUTPUT", "-d", &ip, "-j", "DROP"],
                    );
                }
                tokio::time::sleep(hold).await;
                cluster.net.heal(target);
            }
            "inbound-drop" => {
                let led = sequencer_leader().await == Some(target);
                for o in others(target) {
                    let ip = Net::ip(o);
                    cluster.net.exec(
                        target,
                        &["iptables", "-A", "INPUT", "-s", &ip, "-j", "DROP"],
                    );
                }
                handovers.push(("inbound-drop", led, moved_off(target, led, hold).await));
                cluster.net.heal(target);
            }
            "kill" => {
                cluster.kill(target);
                tokio::time::sleep(hold).await;
                cluster.start(target);
            }
            "pause" => {
                cluster.signal(target, "-STOP");
                tokio::time::sleep(hold).await;
                cluster.signal(target, "-CONT");
            }
            "slow-link" => {
                let led = sequencer_leader().await == Some(target);
                cluster.net.exec(
                    target,
                    &[
                        "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "512kbit",
                        "burst", "32kbit", "latency", "400ms",
                    ],
                );
                cluster.net.exec(
                    target,
                    &[
                        "iptables",
                        "-A",
                        "INPUT",
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        "0.05",
                        "-j",
                        "DROP",
                    ],
                );
                handovers.push(("slow-link", led, moved_off(target, led, hold).await));
                cluster.net.heal(target);
            }
            "disk-full" => {
                let filler = cluster.small_disk.join("filler");
                // Fill what is left (dd stops at ENOSPC).
                sh(&[
                    "dd",
                    "if=/dev/zero",
                    &format!("of={}", filler.display()),
                    "bs=1M",
                    "count=400",
                ]);
                tokio::time::sleep(hold).await;
                let _ = std::fs::remove_file(&filler);
                // A member that stopped on the full disk is restarted once there is room.
                tokio::time::sleep(Duration::from_millis(500)).await;
                cluster.restart_dead();
            }
            _ => unreachable!(),
        }
        faults_made.push(Fault {
            kind: fault,
            member: target,
            from_ms: fault_started,
            to_ms: start.elapsed().as_millis(),
        });
    }
    println!("faults made: {made:?}; healing");
    for (fault, led, moved) in &handovers {
        if *led {
            match moved {
                Some(d) => println!(
                    "  {fault} on the sequencer leader: leadership moved off it after {} ms",
                    d.as_millis()
                ),
                None => println!(
                    "  {fault} on the sequencer leader: leadership stayed on it until healed"
                ),
            }
        }
    }
    for i in 0..MEMBERS + FRONT_DOORS {
        cluster.net.heal(i);
        cluster.signal(i, "-CONT");
    }
    cluster.restart_dead();
    // Settle: every member serving and a few epochs signed.
    for i in 0..MEMBERS + FRONT_DOORS {
        let url = member_url(i);
        let mut ok = false;
        for _ in 0..600 {
            if serving(&url).await {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            ok,
            "{url} not SERVING after healing\n{}",
            cluster.tail_logs()
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true).unwrap();
    for t in tasks {
        t.await.unwrap();
    }

    // The history, kept for study.
    let out_dir = std::env::var_os("CANDOR_NEMESIS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = out_dir.join(format!("nemesis-{seed}.jsonl"));
    {
        let mut f = std::fs::File::create(&path).unwrap();
        for op in history.lock().unwrap().iter() {
            writeln!(
                f,
                "{}",
                serde_json::json!({"client": op.client, "at_ms": op.at_ms as u64, "op": op.kind, "label": op.label, "outcome": op.outcome})
            )
            .unwrap();
        }
    }
    let ops = history.lock().unwrap().len();
    let logs = out_dir.join(format!("nemesis-{seed}-logs"));
    keep_logs(&cluster.dir, &logs);
    warn_volume(&cluster.dir, start.elapsed());
    // No member presents an old head as the latest.
    let (max_lag, stale) = probe_lags(&history.lock().unwrap(), &faults_made);
    println!(
        "prober: largest lag of a member's latest answer behind the newest: {} epochs ({}); \
         {} answers beyond {MAX_PROBE_LAG} outside the exemptions",
        max_lag.0,
        max_lag.1,
        stale.len()
    );
    for s in &stale {
        println!("  VIOLATION {s}");
    }
    print_publish_gaps(&history.lock().unwrap());
    let acked = acked.lock().unwrap().clone();
    println!(
        "history: {ops} operations, {} acknowledged publishes -> {}",
        acked.len(),
        path.display()
    );
    assert!(
        acked.len() > 50,
        "too few publishes acknowledged: {}",
        acked.len()
    );

    // The checker.
    let checker = connect(member_url(0)).await;
    // Every SMT, 16 at a time.
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut checks = Vec::new();
    for a in acked.clone() {
        let (c, sem) = (checker.clone(), Arc::clone(&sem));
        checks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            match tokio::time::timeout(
                Duration::from_secs(60),
                c.wait_merged(
                    a.label.as_bytes(),
                    &a.publish.smt,
                    Duration::from_millis(200),
                ),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(ClientError::BrokenPromise(_))) => Err(format!(
                    "{} v{}: not honoured by its deadline",
                    a.label, a.publish.version
                )),
                Ok(Err(e)) => Err(format!("checking {} v{}: {e}", a.label, a.publish.version)),
                Err(_) => Err(format!(
                    "{} v{} never merged (lost?)",
                    a.label, a.publish.version
                )),
            }
        }));
    }
    let mut late = 0usize;
    for t in checks {
        if let Err(e) = t.await.unwrap() {
            println!("  VIOLATION {e}");
            late += 1;
        }
    }
    assert_eq!(
        late, 0,
        "{late} acknowledged SMTs lost or not honoured by their deadline"
    );
    // Every label's history verifies (gap-free chains) and holds its acked versions.
    let mut per_label: BTreeMap<&str, Vec<&Acked>> = BTreeMap::new();
    for a in &acked {
        per_label.entry(&a.label).or_default().push(a);
    }
    for (label, list) in &per_label {
        let h = checker.history(label.as_bytes()).await.unwrap();
        for a in list {
            assert!(
                h.history.contains(a.publish.version, &a.publish.leaf_hash),
                "{label} v{} missing from its history",
                a.publish.version
            );
        }
    }
    // One head per epoch across members, and a full audit.
    let latest = checker.latest_head().await.unwrap().head.epoch;
    let clients: Vec<Client> = futures_join((0..MEMBERS).map(|i| connect(member_url(i)))).await;
    for e in 1..=latest {
        let heads: Vec<Vec<u8>> = {
            let mut v = Vec::new();
            for c in &clients {
                v.push(c.head(e).await.unwrap().encode());
            }
            v
        };
        assert!(
            heads.windows(2).all(|w| w[0] == w[1]),
            "members disagree on the head of epoch {e}"
        );
    }
    candor_client::audit_range(&checker, 1, latest)
        .await
        .unwrap();
    let v = violations.lock().unwrap().clone();
    assert!(v.is_empty(), "violations: {v:?}");
    assert!(
        stale.is_empty(),
        "members presented old heads as the latest: {stale:?}"
    );
    println!(
        "nemesis seed {seed}: {} acknowledged publishes all honoured, {latest} epochs identical on {MEMBERS} members and audited, no client saw an epoch go back, no member presented an old head as the latest",
        acked.len()
    );
}

/// Prints how many WARN lines each process logged (all its runs), per second of
/// the test, and the most frequent kinds: failures are meant to be summarised,
/// not repeated per heartbeat.
/// Prints the longest windows in which no client had a publish acknowledged
/// (what one fault costs the writers), and how many windows passed 2 s.
fn print_publish_gaps(history: &[Op]) {
    let mut acks: Vec<u128> = history
        .iter()
        .filter(|o| o.kind == "publish" && o.outcome.starts_with("ok"))
        .map(|o| o.at_ms)
        .collect();
    acks.sort_unstable();
    let mut gaps: Vec<(u128, u128)> = acks.windows(2).map(|w| (w[1] - w[0], w[0])).collect();
    gaps.sort_unstable_by(|a, b| b.cmp(a));
    let over = gaps.iter().filter(|g| g.0 > 2_000).count();
    let longest: Vec<String> = gaps
        .iter()
        .take(3)
        .map(|(len, at)| format!("{:.1} s from {:.1} s", *len as f64 / 1e3, *at as f64 / 1e3))
        .collect();
    println!(
        "publish gaps (no client acknowledged): longest {}; {over} longer than 2 s",
        longest.join(", ")
    );
}

/// Copies the processes' logs out of the run's temp dir (deleted at the end)
/// to `to`, next to the history.
fn keep_logs(dir: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".log") {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    println!("process logs -> {}", to.display());
}

fn warn_volume(dir: &std::path::Path, took: Duration) {
    let mut per_proc: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".log") {
            continue;
        }
        let proc_name = name.split('.').next().unwrap_or_default().to_string();
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            let Some(at) = line.find("WARN") else {
                continue;
            };
            *per_proc.entry(proc_name.clone()).or_default() += 1;
            let kind: String = line[at..]
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .take(110)
                .collect();
            *kinds.entry(kind).or_default() += 1;
        }
    }
    let secs = took.as_secs_f64().max(1.0);
    for (p, n) in &per_proc {
        println!("WARN lines: {p}: {n} ({:.1}/s)", *n as f64 / secs);
    }
    let mut top: Vec<_> = kinds.into_iter().collect();
    top.sort_by_key(|k| std::cmp::Reverse(k.1));
    for (k, n) in top.iter().take(5) {
        println!("  {n:>6} x {k}");
    }
}

/// One fault the nemesis made.
struct Fault {
    kind: &'static str,
    member: usize,
    from_ms: u128,
    to_ms: u128,
}

impl Fault {
    /// Whether the prober bound is lifted for `member` at `at_ms` by this fault
    /// (see the module docs).
    fn exempts(&self, member: usize, at_ms: u128) -> bool {
        let until = if self.kind == "slow-link" {
            self.to_ms + PROBE_GRACE_MS
        } else {
            self.from_ms + PROBE_GRACE_MS
        };
        self.member == member && (self.from_ms..until).contains(&at_ms)
    }
}

/// The largest lag (epochs) of any prober answer behind the newest epoch any
/// member had answered by then, and the answers that broke the bound (see the
/// module docs).
fn probe_lags(history: &[Op], faults: &[Fault]) -> ((u64, String), Vec<String>) {
    let mut probes: Vec<&Op> = history
        .iter()
        .filter(|o| o.kind == "member-latest")
        .collect();
    probes.sort_by_key(|o| o.at_ms);
    let (mut newest, mut stale) = (0u64, Vec::new());
    let mut max_lag = (0u64, String::from("none"));
    for o in probes {
        let Some(epoch) = o
            .outcome
            .strip_prefix("epoch ")
            .and_then(|e| e.parse::<u64>().ok())
        else {
            continue;
        };
        newest = newest.max(epoch);
        let lag = newest - epoch;
        if lag > max_lag.0 {
            max_lag = (lag, format!("{} at {} ms", o.label, o.at_ms));
        }
        let member = o.client - 100;
        let exempt = faults.iter().any(|f| f.exempts(member, o.at_ms));
        if !exempt && lag > MAX_PROBE_LAG {
            stale.push(format!(
                "{} at {} ms: latest epoch {epoch}, newest {newest}",
                o.label, o.at_ms
            ));
        }
    }
    (max_lag, stale)
}

fn crng_range(rng: &mut StdRng, lo: u64, hi: u64) -> u64 {
    rng.random_range(lo..hi)
}

async fn futures_join<F: std::future::Future<Output = Client>>(
    fs: impl Iterator<Item = F>,
) -> Vec<Client> {
    let mut v = Vec::new();
    for f in fs {
        v.push(f.await);
    }
    v
}
