//! The key layout of the shard trees and of the epoch log, for code that copies or
//! deletes their records whole: the Raft snapshots of the shard and sequencer groups
//! (`candor-shard`, `candor-sequencer`). Those take their key ranges from here, so a
//! change of layout changes them too (one owner; see the crate docs for the format).

/// A shard's records (space [`candor_store::Space::Tree`], except the marker).
pub mod shard {
    use candor_store::KeyRange;

    use crate::keys::{LEAF, REV, meta_shard_key, node_shard_prefix};

    /// Node records of `shard`: `N ‖ shard u16 ‖ …`.
    pub fn nodes(shard: u32) -> KeyRange {
        KeyRange::prefix(&node_shard_prefix(shard))
    }

    /// Leaf version records of `shard`: `L ‖ index ‖ …` for the indices whose top
    /// `shard_bits` bits are the shard.
    pub fn leaves(shard: u32, shard_bits: u8) -> KeyRange {
        let at = |s: u32| {
            let mut k = vec![LEAF];
            let top = if shard_bits == 0 {
                0
            } else {
                s << (32 - u32::from(shard_bits))
            };
            k.extend_from_slice(&top.to_be_bytes());
            k.extend_from_slice(&[0u8; 28]);
            k
        };
        let end = if shard_bits == 0 || shard + 1 >= 1u32 << shard_bits {
            vec![LEAF + 1]
        } else {
            at(shard + 1)
        };
        KeyRange::half_open(
            if shard_bits == 0 {
                vec![LEAF]
            } else {
                at(shard)
            },
            end,
        )
    }

    /// Revision records of `shard`: `R ‖ shard u16 ‖ rev u64be`.
    pub fn revisions(shard: u32) -> KeyRange {
        let mut k = vec![REV];
        k.extend_from_slice(&(shard as u16).to_be_bytes());
        KeyRange::prefix(&k)
    }

    /// The shard's sealed-revision marker (space [`candor_store::Space::Meta`]):
    /// written last when records are copied in, it makes their revisions readable.
    pub fn marker_key(shard: u32) -> Vec<u8> {
        meta_shard_key(shard)
    }
}

/// The epoch log's records (space [`candor_store::Space::EpochLog`]).
pub mod epoch_log {
    /// Signed heads: `H ‖ epoch u64be`.
    pub const HEAD: u8 = b'H';
    /// Perfect subtree roots: `N ‖ level u8 ‖ i u64be`.
    pub const NODE: u8 = b'N';
    /// Revision-vector chunks: `V ‖ chunk u16 ‖ epoch u64be`.
    pub const REVS: u8 = b'V';
    /// Configurations: `K ‖ version u32be`.
    pub const CONFIG: u8 = b'K';
    /// Auditor cosignatures: `A ‖ epoch u64be ‖ auditor key (32)`.
    pub const COSIG: u8 = b'A';
    /// Checkpoint-tree perfect subtree roots (RFC 6962, SHA-256; see
    /// `candor_core::checkpoint`): `S ‖ level u8 ‖ i u64be`.
    pub const CP_NODE: u8 = b'S';
    /// Signed C2SP checkpoints: `P ‖ epoch u64be` → the signed note (UTF-8).
    pub const CHECKPOINT: u8 = b'P';
    /// The latest epoch (written last by an append).
    pub const LATEST: &[u8] = b"L";
    /// The shard count of the revision vectors.
    pub const SHARD_COUNT: &[u8] = b"C";
    /// Shards per revision-vector chunk: 4096 × 8 bytes = 32 KiB per value.
    pub const CHUNK: usize = 4096;

    /// The head record of `epoch`.
    pub fn head_key(epoch: u64) -> Vec<u8> {
        let mut k = vec![HEAD];
        k.extend_from_slice(&epoch.to_be_bytes());
        k
    }

    /// The record of configuration `version`.
    pub fn config_key(version: u32) -> Vec<u8> {
        let mut k = vec![CONFIG];
        k.extend_from_slice(&version.to_be_bytes());
        k
    }

    /// The checkpoint-tree perfect subtree root `(level, i)`.
    pub fn cp_node_key(level: u32, i: u64) -> Vec<u8> {
        let mut k = vec![CP_NODE, level as u8];
        k.extend_from_slice(&i.to_be_bytes());
        k
    }

    /// The signed checkpoint of `epoch`.
    pub fn checkpoint_key(epoch: u64) -> Vec<u8> {
        let mut k = vec![CHECKPOINT];
        k.extend_from_slice(&epoch.to_be_bytes());
        k
    }

    /// The prefix of `epoch`'s cosignatures.
    pub fn cosig_prefix(epoch: u64) -> Vec<u8> {
        let mut k = vec![COSIG];
        k.extend_from_slice(&epoch.to_be_bytes());
        k
    }

    /// The cosignature of `auditor` over `epoch`'s head.
    pub fn cosig_key(epoch: u64, auditor: &[u8; 32]) -> Vec<u8> {
        let mut k = cosig_prefix(epoch);
        k.extend_from_slice(auditor);
        k
    }

    /// The perfect subtree root `(level, i)`.
    pub fn node_key(level: u32, i: u64) -> Vec<u8> {
        let mut k = vec![NODE, level as u8];
        k.extend_from_slice(&i.to_be_bytes());
        k
    }

    /// The prefix of revision chunk `chunk`'s records.
    pub fn revs_prefix(chunk: usize) -> Vec<u8> {
        let mut k = vec![REVS];
        k.extend_from_slice(&(chunk as u16).to_be_bytes());
        k
    }

    /// Revision chunk `chunk` of `epoch`.
    pub fn revs_key(chunk: usize, epoch: u64) -> Vec<u8> {
        let mut k = revs_prefix(chunk);
        k.extend_from_slice(&epoch.to_be_bytes());
        k
    }
}

#[cfg(test)]
mod tests {
    use super::shard::leaves as leaf_range;

    #[test]
    fn leaf_ranges_partition_the_index_space() {
        for bits in [0u8, 1, 3, 8, 9, 16] {
            let n = 1u32 << bits;
            let mut prev_end: Option<Vec<u8>> = None;
            for s in [0, 1, n / 2, n.saturating_sub(1)] {
                if s >= n {
                    continue;
                }
                let r = leaf_range(s, bits);
                let mut idx = [0u8; 32];
                if bits > 0 {
                    idx[..4].copy_from_slice(&(s << (32 - u32::from(bits))).to_be_bytes());
                }
                let mut k = vec![b'L'];
                k.extend_from_slice(&idx);
                k.push(1);
                assert!(r.contains(&k), "bits {bits} shard {s}");
                // Last index of the shard.
                let mut last = idx;
                let keep = bits as usize;
                for (i, byte) in last.iter_mut().enumerate() {
                    for bit in 0..8 {
                        if i * 8 + bit >= keep {
                            *byte |= 0x80 >> bit;
                        }
                    }
                }
                let mut k = vec![b'L'];
                k.extend_from_slice(&last);
                k.extend_from_slice(&[8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
                assert!(r.contains(&k), "bits {bits} shard {s} last index");
                if s + 1 == n {
                    assert_eq!(r.end(), Some(&[b'M'][..]));
                }
                let _ = prev_end.replace(r.end().map(<[u8]>::to_vec).unwrap_or_default());
            }
        }
        // Adjacent shards: one's end is the next one's start.
        let a = leaf_range(4, 3);
        let b = leaf_range(5, 3);
        assert_eq!(a.end(), Some(b.start()));
    }
}
