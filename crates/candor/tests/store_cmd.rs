//! `candor store usage` and `candor store compact` on a stopped member's store:
//! bytes per space, a compaction that drops overwritten records, and precise
//! refusals (no store there; the store still open elsewhere) that change nothing.

use std::path::Path;
use std::process::{Command, Output};

use candor_store::{Durability, FjallStore, ReadView, Space, Store, WriteBatch};

const BIN: &str = env!("CARGO_BIN_EXE_candor");

fn candor(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run candor")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "candor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A store under `data/store` with the same 2,000 tree keys written 5 times and some
/// label-vrf records.
fn fill(data: &Path) {
    let store = FjallStore::open(data.join("store")).unwrap();
    for round in 0..5u8 {
        let mut b = WriteBatch::new();
        for i in 0..2_000u32 {
            b.put(Space::Tree, i.to_be_bytes().to_vec(), vec![round; 200]);
        }
        for i in 0..100u32 {
            b.put(Space::LabelVrf, i.to_be_bytes().to_vec(), vec![7; 129]);
        }
        store.write(&b, Durability::Sync).unwrap();
    }
}

#[test]
fn usage_and_compact_report_bytes_per_space() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data);
    let d = data.to_str().unwrap();

    let usage = json(&candor(&["store", "usage", "--data-dir", d, "--json"]));
    let spaces = usage["live_table_bytes"].as_object().unwrap();
    assert_eq!(spaces.len(), Space::ALL.len(), "{usage}");
    assert!(usage["total_bytes"].as_u64().unwrap() > 0);
    assert!(usage["records"].is_null(), "records only when asked");
    let counted = json(&candor(&[
        "store",
        "usage",
        "--data-dir",
        d,
        "--json",
        "--records",
    ]));
    assert_eq!(counted["records"]["tree"]["records"], 2_000, "{counted}");
    assert_eq!(counted["records"]["tree"]["logical_bytes"], 2_000 * 204);
    assert_eq!(counted["records"]["label-vrf"]["records"], 100);

    let c = json(&candor(&["store", "compact", "--data-dir", d, "--json"]));
    let tree_after = c["after"]["live_table_bytes"]["tree"].as_u64().unwrap();
    let vrf_after = c["after"]["live_table_bytes"]["label-vrf"]
        .as_u64()
        .unwrap();
    assert!(tree_after > 0 && vrf_after > 0, "{c}");
    // Four of the five writes of each tree key are gone: the tree's tables hold at
    // most about one copy (2,000 × 204 B, before lz4) plus table overhead.
    assert!(tree_after < 2 * 2_000 * 204, "{c}");

    // The table form names every space.
    let table = candor(&["store", "usage", "--data-dir", d]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    for s in Space::ALL {
        assert!(text.contains(&format!("space {}", s.name())), "{text}");
    }
    // Nothing was lost: every key still reads back its last value.
    let store = FjallStore::open(data.join("store")).unwrap();
    assert_eq!(
        store.get(Space::Tree, &1999u32.to_be_bytes()).unwrap(),
        Some(vec![4; 200])
    );
}

#[test]
fn refusals_are_precise_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = candor(&["store", "usage", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no store at"), "{err}");
    assert!(
        !missing.exists(),
        "a refused command must not create a store"
    );

    // A store held open by another process (here: this test) is refused.
    let data = dir.path().join("data");
    fill(&data);
    let held = FjallStore::open(data.join("store")).unwrap();
    let out = candor(&["store", "compact", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("still running"), "{err}");
    drop(held);
}
