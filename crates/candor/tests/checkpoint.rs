//! C2SP interoperability, checked with an independent implementation: Cloudflare
//! azul's `signed_note` and `tlog_tiles` crates.
//!
//! * `checkpoint_*`: `candor dev` serves, for every epoch, a signed note that
//!   `signed_note` verifies with the log's verifier key (as `candor checkpoint
//!   --vkey` prints it), whose body `tlog_tiles` parses, whose root `tlog_tiles`
//!   recomputes from the signed heads alone, with consistency and inclusion proofs
//!   `tlog_tiles` accepts.
//! * `cosign_*`: a `candor witness` process cosigns Candor's checkpoints through
//!   `candor checkpoint --witness` (the tlog-witness round trip); the cosigned note
//!   verifies with `signed_note` and a `cosignature/v1` verifier written here from
//!   the C2SP spec; the witness refuses bad proofs and keeps its state across
//!   kill -9.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use candor_client::Client;
use candor_proto::candor::v1 as pb;
use candor_proto::candor::v1::key_transparency_client::KeyTransparencyClient;
use ed25519_dalek_v2::Verifier as _;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Hash, HashReader};

mod common;
use common::{BIN, Proc, free_port};

async fn start_dev(dir: &Path) -> (Proc, String) {
    common::start_dev(&dir.join("data"), &dir.join("dev"), &[]).await
}

async fn sdk(dir: &Path, url: &str) -> Client {
    common::sdk(&dir.join("data"), url).await
}

async fn publish_some(c: &Client, prefix: &str, n: u32) {
    for i in 0..n {
        let label = format!("{prefix}{i}");
        let p = c.publish(label.as_bytes(), b"key").await.unwrap();
        c.wait_merged(label.as_bytes(), &p.smt, Duration::from_millis(50))
            .await
            .unwrap();
    }
}

/// `candor <args> --target URL --data-dir DIR`; stdout, which must be a success.
fn cli(dir: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .args(["--target", url, "--data-dir"])
        .arg(dir.join("data"))
        .arg("--state-dir")
        .arg(dir.join("cli-state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "candor {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Hashes stored as `tlog_tiles` lays them out (its own tree arithmetic).
struct Stored(Vec<Hash>);

impl HashReader for Stored {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
    }
}

fn hashes(v: &[Vec<u8>]) -> Vec<Hash> {
    v.iter()
        .map(|h| Hash(h.as_slice().try_into().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_interop_with_azul() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_dev, url) = start_dev(dir).await;
    let c = sdk(dir, &url).await;
    publish_some(&c, "alice", 4).await;
    let mut raw = KeyTransparencyClient::connect(url.clone()).await.unwrap();
    let latest = raw
        .get_checkpoint(pb::GetCheckpointRequest {
            size: 0,
            old_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let n = latest.size;
    assert!(n >= 4, "{n} epochs");

    // The log's verifier key as the CLI prints it; azul parses it (its own key ID
    // arithmetic) and verifies every checkpoint with it.
    let vkey = cli(dir, &url, &["checkpoint", "--vkey"]).trim().to_string();
    let verifier = StandardVerifier::new(&vkey).expect("azul accepts the verifier key");
    let known = VerifierList::new(vec![Box::new(verifier)]);

    // azul recomputes the tree from the signed heads alone.
    let mut stored = Stored(Vec::new());
    let mut heads = Vec::new();
    for e in 1..=n {
        let h = raw
            .get_epoch(pb::GetEpochRequest { epoch: e })
            .await
            .unwrap()
            .into_inner()
            .signed_head;
        let add = tlog_tiles::stored_hashes(e - 1, &h, &stored).unwrap();
        stored.0.extend(add);
        heads.push(h);
    }
    let mut roots = Vec::new();
    for size in 1..=n {
        let r = raw
            .get_checkpoint(pb::GetCheckpointRequest { size, old_size: 0 })
            .await
            .unwrap()
            .into_inner();
        let note = Note::from_bytes(r.note.as_bytes()).expect("azul parses the note");
        let (verified, _) = note
            .verify(&known)
            .expect("azul verifies the log signature");
        assert_eq!(verified.len(), 1);
        let cp = tlog_tiles::Checkpoint::from_bytes(note.text()).expect("azul parses the body");
        assert_eq!(cp.size(), size);
        assert!(cp.extension().is_empty());
        assert_eq!(
            *cp.hash(),
            tlog_tiles::tree_hash(size, &stored).unwrap(),
            "checkpoint {size}: root recomputed by azul"
        );
        // The head of epoch `size` is the tree's last leaf.
        assert_eq!(r.head, heads[size as usize - 1]);
        tlog_tiles::check_record(
            &hashes(&r.head_inclusion),
            size,
            *cp.hash(),
            size - 1,
            tlog_tiles::record_hash(&r.head),
        )
        .expect("azul accepts the head inclusion proof");
        roots.push(*cp.hash());
    }
    // Every consistency proof between two sizes, as a witness checks it.
    for old in 1..n {
        let r = raw
            .get_checkpoint(pb::GetCheckpointRequest {
                size: n,
                old_size: old,
            })
            .await
            .unwrap()
            .into_inner();
        tlog_tiles::check_tree(
            &hashes(&r.consistency),
            n,
            roots[n as usize - 1],
            old,
            roots[old as usize - 1],
        )
        .unwrap_or_else(|e| panic!("azul refuses the proof {old} -> {n}: {e:?}"));
    }
    // The SDK's verifier agrees, and refuses a tampered answer.
    let v = c.checkpoint(n, Some((1, roots[0].0))).await.unwrap();
    assert_eq!(v.checkpoint.root, roots[n as usize - 1].0);
    let chain = c.chain();
    let good = raw
        .get_checkpoint(pb::GetCheckpointRequest {
            size: n,
            old_size: 2,
        })
        .await
        .unwrap()
        .into_inner();
    candor_client::verify::checkpoint(&chain, &good, Some((2, roots[1].0))).unwrap();
    let mut bad = good.clone();
    let at = bad.note.find('\n').unwrap() + 1;
    bad.note.replace_range(at..at + 1, "9");
    assert!(candor_client::verify::checkpoint(&chain, &bad, None).is_err());
    let mut bad = good.clone();
    bad.consistency[0][0] ^= 1;
    assert!(candor_client::verify::checkpoint(&chain, &bad, Some((2, roots[1].0))).is_err());
    let mut bad = good.clone();
    bad.head_inclusion[0][5] ^= 1;
    assert!(candor_client::verify::checkpoint(&chain, &bad, None).is_err());
    // Bad requests get precise errors.
    let e = raw
        .get_checkpoint(pb::GetCheckpointRequest {
            size: 2,
            old_size: 3,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = raw
        .get_checkpoint(pb::GetCheckpointRequest {
            size: n + 1000,
            old_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

/// The `cosignature/v1` verifier the azul crates do not ship, from
/// c2sp.org/tlog-cosignature: key ID over type 0x04, a timestamped signature over
/// `cosignature/v1\ntime <t>\n` and the checkpoint body.
struct CosignatureV1 {
    name: String,
    id: u32,
    key: ed25519_dalek_v2::VerifyingKey,
}

impl signed_note::Verifier for CosignatureV1 {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 72 {
            return false;
        }
        let t = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let mut m = format!("cosignature/v1\ntime {t}\n").into_bytes();
        m.extend_from_slice(msg);
        let s = ed25519_dalek_v2::Signature::from_bytes(sig[8..].try_into().unwrap());
        self.key.verify(&m, &s).is_ok()
    }
}

fn cosigner(vkey: &str) -> CosignatureV1 {
    use base64::Engine;
    let mut parts = vkey.splitn(3, '+');
    let (name, _id, material) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let material = base64::engine::general_purpose::STANDARD
        .decode(material)
        .unwrap();
    assert_eq!(material[0], 0x04, "a cosignature/v1 key");
    CosignatureV1 {
        name: name.to_string(),
        id: signed_note::key_id(name, &material),
        key: ed25519_dalek_v2::VerifyingKey::from_bytes(material[1..].try_into().unwrap()).unwrap(),
    }
}

fn start_witness(dir: &Path, log_vkey: &str, port: u16) -> (Proc, String) {
    let child = Command::new(BIN)
        .args(["witness", "--name", "witness.example/w1", "--key-file"])
        .arg(dir.join("witness.key"))
        .arg("--state-dir")
        .arg(dir.join("witness-state"))
        .args(["--log", log_vkey])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("witness.stderr.log")).unwrap())
        .spawn()
        .expect("spawn candor witness");
    let mut p = Proc(child);
    // The first lines name the URL and the cosigner vkey.
    let out = p.0.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
    let _serving = lines.next().unwrap().unwrap();
    let vkey_line = lines.next().unwrap().unwrap();
    let vkey = vkey_line
        .trim()
        .strip_prefix("cosigner vkey: ")
        .unwrap()
        .to_string();
    (p, vkey)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_witness_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_dev, url) = start_dev(dir).await;
    let c = sdk(dir, &url).await;
    publish_some(&c, "bob", 2).await;
    let log_vkey = cli(dir, &url, &["checkpoint", "--vkey"]).trim().to_string();
    let port = free_port("127.0.0.1");
    let witness_url = format!("http://127.0.0.1:{port}");
    let (w, wvkey) = start_witness(dir, &log_vkey, port);
    let known = VerifierList::new(vec![
        Box::new(StandardVerifier::new(&log_vkey).unwrap()),
        Box::new(cosigner(&wvkey)),
    ]);
    let cosign = || {
        let out = cli(
            dir,
            &url,
            &[
                "checkpoint",
                "--json",
                "--witness",
                &witness_url,
                "--witness-vkey",
                &wvkey,
            ],
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };

    // First contact (old size 0), then a later checkpoint: the witness answers 409
    // with its size and the CLI retries with the consistency proof.
    let mut sizes = Vec::new();
    for round in 0..2 {
        if round == 1 {
            publish_some(&c, "carol", 2).await;
        }
        let out = cosign();
        let note = out["cosigned_note"].as_str().unwrap();
        let parsed = Note::from_bytes(note.as_bytes()).expect("azul parses the cosigned note");
        let (verified, unverified) = parsed.verify(&known).expect("azul verifies both");
        assert_eq!(verified.len(), 2, "the log's signature and the cosignature");
        assert!(unverified.is_empty());
        sizes.push(out["size"].as_u64().unwrap());
    }
    assert!(sizes[1] > sizes[0], "{sizes:?}");

    // The witness refuses a tampered proof (422) and a stale old size (409 with
    // its size), and changes nothing.
    let http = reqwest::Client::new();
    publish_some(&c, "dave", 1).await;
    let mut raw = KeyTransparencyClient::connect(url.clone()).await.unwrap();
    let r = raw
        .get_checkpoint(pb::GetCheckpointRequest {
            size: 0,
            old_size: sizes[1],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.size > sizes[1]);
    let mut proof = r.consistency.clone();
    proof[0][0] ^= 1;
    let body = candor_client::witness::AddCheckpoint {
        old_size: sizes[1],
        proof: proof
            .iter()
            .map(|p| p.as_slice().try_into().unwrap())
            .collect(),
        note: r.note.clone(),
    }
    .encode();
    let resp = http
        .post(format!("{witness_url}/add-checkpoint"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let stale = candor_client::witness::AddCheckpoint {
        old_size: 0,
        proof: Vec::new(),
        note: r.note.clone(),
    }
    .encode();
    let resp = http
        .post(format!("{witness_url}/add-checkpoint"))
        .body(stale.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/x.tlog.size"
    );
    assert_eq!(resp.text().await.unwrap(), format!("{}\n", sizes[1]));

    // kill -9 and restart: the witness remembers the size it cosigned.
    drop(w);
    let (_w, again) = start_witness(dir, &log_vkey, port);
    assert_eq!(again, wvkey, "the key file is reused");
    let mut resp = None;
    for _ in 0..100 {
        if let Ok(r) = http
            .post(format!("{witness_url}/add-checkpoint"))
            .body(stale.clone())
            .send()
            .await
        {
            resp = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = resp.expect("the witness came back");
    assert_eq!(resp.status().as_u16(), 409);
    assert_eq!(resp.text().await.unwrap(), format!("{}\n", sizes[1]));
    let out = cosign();
    assert!(out["size"].as_u64().unwrap() > sizes[1]);
}
