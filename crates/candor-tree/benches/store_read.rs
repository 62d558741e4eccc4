//! What a stride load costs on the embedded store: one range scan over 16
//! adjacent positions against point reads, with 3M versioned node-like keys
//! (~250 MB, more than the 64 MiB block cache):
//!
//! ```text
//! cargo bench -p candor-tree --bench store_read -- 3000000
//! ```
use std::sync::Arc;
use std::time::Instant;

use candor_store::{
    Direction, FjallConfig, FjallStore, KeyRange, ReadView, Space, Store, WriteBatch,
};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000_000);
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let s = Arc::new(FjallStore::open_with(dir.path(), FjallConfig::default()).unwrap());
    let mut x = 1u64;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x
    };
    let key = |pos: u32, rev: u8| {
        let mut k = vec![b'N', 0, 0, 19];
        k.extend_from_slice(&pos.to_be_bytes()[1..]);
        k.push(1);
        k.push(rev);
        k
    };
    let t = Instant::now();
    let mut b = WriteBatch::new();
    for i in 0..n {
        let pos = (next() >> 40) as u32 & 0xFF_FFFF;
        let rev = (i / 30_000 + 1) as u8;
        b.put(Space::Tree, key(pos, rev), vec![7u8; 60]);
        if b.len() >= 30_000 {
            s.write_chunked(std::mem::take(&mut b), candor_store::Durability::Buffered)
                .unwrap();
        }
    }
    s.write_chunked(b, candor_store::Durability::Buffered)
        .unwrap();
    println!("loaded {n} in {:?}", t.elapsed());
    std::thread::sleep(std::time::Duration::from_secs(5));
    for round in 0..2 {
        let m = 20_000;
        let t = Instant::now();
        let mut found = 0;
        for _ in 0..m {
            let pos = (next() >> 40) as u32 & 0xFF_FFF0;
            let r = KeyRange::half_open(key(pos, 0), key(pos + 16, 0));
            found += s
                .scan(Space::Tree, &r, Direction::Forward, 128)
                .unwrap()
                .len();
        }
        println!(
            "round {round}: scan16 {:.1} µs ({found} found)",
            t.elapsed().as_secs_f64() * 1e6 / m as f64
        );
        let t = Instant::now();
        let mut hit = 0;
        for i in 0..m {
            let pos = (next() >> 40) as u32 & 0xFF_FFFF;
            let rev = ((i as u64 * 7919) % (n / 30_000) + 1) as u8;
            hit += s.get(Space::Tree, &key(pos, rev)).unwrap().is_some() as usize;
        }
        println!(
            "round {round}: get (mostly absent) {:.1} µs ({hit} hits)",
            t.elapsed().as_secs_f64() * 1e6 / m as f64
        );
        // existing keys: re-generate from a copy of the sequence is awkward; use scan results
        let mut keys = Vec::new();
        for _ in 0..2000 {
            let pos = (next() >> 40) as u32 & 0xFF_FFF0;
            let r = KeyRange::half_open(key(pos, 0), key(pos + 16, 0));
            for (k, _) in s.scan(Space::Tree, &r, Direction::Forward, 128).unwrap() {
                keys.push(k);
            }
        }
        // shuffle
        for i in (1..keys.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            keys.swap(i, j);
        }
        let t = Instant::now();
        for k in &keys {
            assert!(s.get(Space::Tree, k).unwrap().is_some());
        }
        println!(
            "round {round}: get (present) {:.1} µs over {}",
            t.elapsed().as_secs_f64() * 1e6 / keys.len() as f64,
            keys.len()
        );
    }
}
