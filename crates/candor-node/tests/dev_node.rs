//! Node end to end on a temporary directory: concurrent publishes, SMTs, signed heads
//! covering them with verifiable lookup proofs, restart with consistent epochs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use candor_core::log::{HeadExtensionProof, verify_head_extension};
use candor_core::map::commit;
use candor_core::signed::{SignedHead, SigningKeyPair};
use candor_core::vrf::VrfSecretKey;
use candor_node::{
    Node, NodeConfig, NodeKeys, PublishError, PublishReceipt, PublishRequest, Publisher,
};
use candor_raft::openraft::async_runtime::watch::WatchReceiver;
use candor_tree::OpeningPolicy;

const LABELS: usize = 1000;
const WAIT: Duration = Duration::from_secs(60);

fn vrf() -> VrfSecretKey {
    VrfSecretKey::from_bytes(&[42; 32])
}

fn config(dir: &std::path::Path) -> NodeConfig {
    let keys = NodeKeys {
        head: SigningKeyPair::from_seed(&[1; 32]),
        smt: SigningKeyPair::from_seed(&[2; 32]),
        vrf_public: vrf().public_key(),
    };
    let mut c = NodeConfig::new(dir, "test.candor", keys);
    c.epoch_interval = Duration::from_millis(200);
    c.seal_interval = Duration::from_millis(50);
    c.store.cache_bytes = 8 << 20;
    c.tree_cache_bytes = 8 << 20;
    c
}

fn request(n: usize, value: &str, key: Option<String>) -> PublishRequest {
    let label = format!("user-{n:05}@example.com");
    let index = vrf().evaluate(label.as_bytes()).0.index();
    PublishRequest {
        tenant: "tenant-a".into(),
        idempotency_key: key,
        label: label.into_bytes(),
        index,
        value: value.as_bytes().to_vec(),
    }
}

fn check_receipt(
    node: &Node,
    req: &PublishRequest,
    r: &PublishReceipt,
    version: u64,
) -> Result<()> {
    r.smt.verify(node.config()).context("SMT verifies")?;
    ensure!(
        r.leaf.index == req.index && r.leaf.version == version,
        "leaf {:?}",
        r.leaf
    );
    ensure!(r.smt.smt.leaf_hash == r.leaf.hash() && r.smt.smt.version == version);
    ensure!(r.leaf.commitment == commit(&r.nonce, &req.label, version, &req.value));
    Ok(())
}

/// Publish every request from `tasks` concurrent callers, in calls of `per_call` items.
async fn publish_all(
    p: Arc<dyn Publisher>,
    reqs: Vec<PublishRequest>,
    tasks: usize,
    per_call: usize,
) -> Result<Vec<(PublishRequest, PublishReceipt)>> {
    let chunks: Vec<Vec<PublishRequest>> = reqs
        .chunks(reqs.len().div_ceil(tasks))
        .map(<[_]>::to_vec)
        .collect();
    let mut handles = Vec::new();
    for chunk in chunks {
        let p = Arc::clone(&p);
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for call in chunk.chunks(per_call) {
                let res = p.publish(call.to_vec()).await?;
                for (req, r) in call.iter().zip(res) {
                    out.push((req.clone(), r?));
                }
            }
            Ok::<_, PublishError>(out)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    Ok(all)
}

/// Wait for a signed head whose map holds every `(label, version)` in `want`; verify
/// a lookup proof for each against that head.
async fn wait_covered(
    node: &Node,
    want: &[(PublishRequest, PublishReceipt)],
) -> Result<SignedHead> {
    let mut rx = node.heads();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let head = rx.borrow_and_update().clone();
        if let Some(head) = head {
            head.verify(node.config())?;
            let view = node.epochs().view(&node.forest(), head.head.epoch)?;
            ensure!(
                view.root_hash() == head.head.map_root,
                "view root = signed root"
            );
            let mut covered = true;
            for (req, r) in want {
                match view.leaf(&req.index)? {
                    Some(l) if l.version >= r.leaf.version => {}
                    _ => {
                        covered = false;
                        break;
                    }
                }
            }
            if covered {
                let vrf = vrf();
                for (req, r) in want {
                    let (_, vrf_proof) = vrf.evaluate(&req.label);
                    let proof = view.lookup_proof(&req.index, vrf_proof, OpeningPolicy::Open)?;
                    let v =
                        proof.verify(&node.config().vrf_key, &req.label, &head.head.map_root)?;
                    let e = v.entry.context("member")?;
                    ensure!(e.leaf == r.leaf, "the signed map holds the SMT's leaf");
                    ensure!(e.value.as_deref() == Some(req.value.as_slice()));
                    // The SMT's promise is kept.
                    ensure!(head.head.timestamp_ms <= r.smt.smt.merge_deadline_ms);
                }
                return Ok(head);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no signed head covers the publishes within {WAIT:?}");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
    }
}

fn check_extension(node: &Node, old: &SignedHead, new: &SignedHead) -> Result<()> {
    let e = node.epochs();
    let proof = HeadExtensionProof {
        consistency: e.consistency_proof(old.head.epoch, new.head.epoch)?,
        inclusion: e.inclusion_proof(old.head.epoch, new.head.epoch)?,
    };
    verify_head_extension(old, new, &proof)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_seal_epoch_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(config(dir.path())).await?;
    assert_eq!(node.config().shard_bits, 4);

    // 1,000 new labels from 40 concurrent callers, in calls of 1 to 5 items.
    let reqs: Vec<PublishRequest> = (0..LABELS)
        .map(|n| request(n, &format!("key-{n}-v1"), Some(format!("create-{n}"))))
        .collect();
    let mut receipts = publish_all(node.publisher(), reqs[..LABELS / 2].to_vec(), 40, 1).await?;
    receipts.extend(publish_all(node.publisher(), reqs[LABELS / 2..].to_vec(), 40, 5).await?);
    ensure!(receipts.len() == LABELS);
    for (req, r) in &receipts {
        check_receipt(&node, req, r, 1)?;
    }
    let head1 = wait_covered(&node, &receipts).await?;

    // A retry with the same key returns the first result (same leaf and nonce).
    let retry = node.publisher().publish(vec![reqs[7].clone()]).await?;
    let r = retry.into_iter().next().context("one result")??;
    ensure!(r.leaf == receipts[7].1.leaf && r.nonce == receipts[7].1.nonce);
    r.smt.verify(node.config())?;
    // Same key, another value: conflict.
    let mut conflicting = reqs[7].clone();
    conflicting.value = b"other".to_vec();
    let res = node.publisher().publish(vec![conflicting]).await?;
    ensure!(
        matches!(res[0], Err(PublishError::IdempotencyConflict)),
        "{:?}",
        res[0]
    );

    // Updates: version 2 for 100 labels; not waiting for an epoch before the restart.
    let updates: Vec<PublishRequest> = (0..100)
        .map(|n| request(n, &format!("key-{n}-v2"), None))
        .collect();
    let updated = publish_all(node.publisher(), updates, 10, 3).await?;
    for (req, r) in &updated {
        check_receipt(&node, req, r, 2)?;
    }
    let before_restart = node.epochs().latest_epoch();
    let old_heads: Vec<SignedHead> = (1..=before_restart)
        .map(|e| node.epochs().head(e).map(|h| h.expect("stored head")))
        .collect::<Result<_, _>>()?;
    node.shutdown().await;

    // Restart on the same directory: state and epochs continue.
    let node = Node::start(config(dir.path())).await?;
    ensure!(node.epochs().latest_epoch() >= before_restart);
    ensure!(node.heads().borrow().as_ref().map(|h| h.head.epoch) >= Some(before_restart));
    let covered = wait_covered(&node, &updated).await?;
    ensure!(covered.head.epoch > head1.head.epoch);
    for old in &old_heads {
        ensure!(
            node.epochs().head(old.head.epoch)?.as_ref() == Some(old),
            "old heads unchanged"
        );
        check_extension(&node, old, &covered)?;
    }
    // Versions continue (3 for updated labels, 2 for the others) and old keys still dedupe.
    let more: Vec<PublishRequest> = (95..105)
        .map(|n| request(n, &format!("key-{n}-v3"), None))
        .collect();
    let res = publish_all(node.publisher(), more, 2, 5).await?;
    for (req, r) in &res {
        let n: usize = std::str::from_utf8(&req.label)?[5..10].parse()?;
        check_receipt(&node, req, r, if n < 100 { 3 } else { 2 })?;
    }
    let again = node.publisher().publish(vec![reqs[500].clone()]).await?;
    let r = again.into_iter().next().context("one result")??;
    ensure!(
        r.leaf == receipts[500].1.leaf,
        "idempotency survives a restart"
    );
    let last = wait_covered(&node, &res).await?;
    check_extension(&node, &covered, &last)?;

    // Every shard got labels (uniform VRF indices), and each sealed revision is recorded.
    let mut per_shard: HashMap<u32, usize> = HashMap::new();
    for (req, _) in &receipts {
        *per_shard
            .entry(candor_core::map::shard_of(&req.index, 4))
            .or_default() += 1;
    }
    ensure!(per_shard.len() == 16);
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_another_namespace_on_the_same_store() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(config(dir.path())).await?;
    let e = node.flush_epoch().await?;
    ensure!(e >= 1);
    node.shutdown().await;
    let mut c = config(dir.path());
    c.namespace = "other.candor".into();
    let err = Node::start(c).await.expect_err("namespace mismatch");
    ensure!(err.to_string().contains("namespace"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_items_fail_alone() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start(config(dir.path())).await?;
    let mut huge = request(1, "x", None);
    huge.value = vec![7; 200_000];
    let mut empty_label = request(2, "y", None);
    empty_label.label.clear();
    let ok = request(3, "z", None);
    let res = node
        .publisher()
        .publish(vec![huge, ok.clone(), empty_label])
        .await?;
    ensure!(
        matches!(res[0], Err(PublishError::InvalidArgument(_))),
        "{:?}",
        res[0]
    );
    check_receipt(&node, &ok, res[1].as_ref().map_err(Clone::clone)?, 1)?;
    ensure!(
        matches!(res[2], Err(PublishError::InvalidArgument(_))),
        "{:?}",
        res[2]
    );
    ensure!(node.publisher().publish(Vec::new()).await?.is_empty());
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_purge_after_snapshots_and_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let small = |dir: &std::path::Path| {
        let mut c = config(dir);
        c.shard_bits = 1;
        c.raft.snapshot_after_entries = 16;
        c.raft.keep_after_snapshot = 4;
        c
    };
    let node = Node::start(small(dir.path())).await?;
    let mut acked = Vec::new();
    for n in 0..150 {
        let req = request(n, &format!("v{n}"), Some(format!("p{n}")));
        let r = node.publisher().publish(vec![req.clone()]).await?;
        acked.push((req, r.into_iter().next().context("one")??));
    }
    let e = node.flush_epoch().await?;
    let head = node.epochs().head(e)?.context("head")?;
    // Snapshots were taken and the logs purged: far fewer entries than were written.
    for g in node.shard_groups() {
        let m = g.metrics();
        ensure!(m.last_applied.map(|l| l.index) > Some(60), "{m:?}");
        let raw = g.raft().metrics().borrow_watched().clone();
        ensure!(
            raw.snapshot.is_some() && raw.purged.is_some(),
            "snapshot {:?} purged {:?}",
            raw.snapshot,
            raw.purged
        );
    }
    node.shutdown().await;
    let node = Node::start(small(dir.path())).await?;
    let e2 = node.flush_epoch().await?;
    ensure!(e2 > e);
    let new = node.epochs().head(e2)?.context("head")?;
    check_extension(&node, &head, &new)?;
    let view = node.epochs().view(&node.forest(), e2)?;
    for (req, r) in &acked {
        ensure!(view.leaf(&req.index)? == Some(r.leaf));
    }
    let again = node.publisher().publish(vec![acked[3].0.clone()]).await?;
    ensure!(again[0].as_ref().map(|r| r.leaf) == Ok(acked[3].1.leaf));
    node.shutdown().await;
    Ok(())
}
