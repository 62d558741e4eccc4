//! Key and value encodings (the on-disk format; see the crate docs).

use candor_core::ZERO;
use candor_core::map::{Index, Leaf};

use crate::error::{Result, corrupt};

/// Node records: `N | shard u16 | depth-1 u8 | prefix | rev`.
pub(crate) const NODE: u8 = b'N';
/// Leaf version records (with the opening while it is kept): `L | index | version`.
pub(crate) const LEAF: u8 = b'L';
/// Revision records: `R | shard u16 | rev u64be`.
pub(crate) const REV: u8 = b'R';
/// Shard state (space Meta): `candor-tree/shard | shard u16`.
pub(crate) const META_SHARD: &[u8] = b"candor-tree/shard/";
/// Forest configuration (space Meta).
pub(crate) const META_CONFIG: &[u8] = b"candor-tree/config";

/// Appends the order-preserving compact encoding of `v`: one length byte
/// `n` (0..=8) then the `n` low bytes big-endian, without leading zeros.
/// Longer encodings are larger numbers, so byte order is numeric order.
pub(crate) fn put_compact(out: &mut Vec<u8>, v: u64) {
    let n = 8 - (v.leading_zeros() / 8) as usize;
    out.push(n as u8);
    out.extend_from_slice(&v.to_be_bytes()[8 - n..]);
}

/// Decodes a compact integer at the start of `b`; returns it and its length.
pub(crate) fn get_compact(b: &[u8]) -> Result<(u64, usize)> {
    let n = *b.first().ok_or_else(|| corrupt("empty compact integer"))? as usize;
    if n > 8 || b.len() < 1 + n {
        return Err(corrupt("bad compact integer"));
    }
    let bytes = &b[1..1 + n];
    if n > 0 && bytes[0] == 0 {
        return Err(corrupt("non-minimal compact integer"));
    }
    let mut buf = [0u8; 8];
    buf[8 - n..].copy_from_slice(bytes);
    Ok((u64::from_be_bytes(buf), 1 + n))
}

/// A byte greater than every compact length byte: `prefix || MAX_SUFFIX`
/// sorts after every `prefix || compact(v)`.
pub(crate) const MAX_SUFFIX: u8 = 9;

/// Number of prefix bytes stored for a node at `depth`.
#[inline]
pub(crate) fn prefix_bytes(depth: usize) -> usize {
    depth.div_ceil(8)
}

/// `index` with every bit at position `>= depth` cleared.
pub(crate) fn mask(index: &Index, depth: usize) -> Index {
    let mut out = *index;
    if depth >= 256 {
        return out;
    }
    let byte = depth / 8;
    let keep = depth % 8;
    out[byte] &= if keep == 0 { 0 } else { 0xFFu8 << (8 - keep) };
    for b in out.iter_mut().skip(byte + 1) {
        *b = 0;
    }
    out
}

/// `k` bits of `index` starting at bit `from` (most significant first), as an integer.
#[inline]
pub(crate) fn bits(index: &Index, from: usize, k: usize) -> usize {
    let mut v = 0usize;
    for i in from..from + k {
        v = (v << 1) | usize::from(candor_core::map::bit(index, i));
    }
    v
}

/// `prefix` (masked to `depth` bits) extended by the `k`-bit `suffix`.
pub(crate) fn extend(prefix: &Index, depth: usize, k: usize, suffix: usize) -> Index {
    let mut out = *prefix;
    for j in 0..k {
        if (suffix >> (k - 1 - j)) & 1 == 1 {
            let i = depth + j;
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

/// Key of node position `(depth, prefix)` of `shard`, without the revision.
pub(crate) fn node_pos_key(shard: u32, depth: usize, prefix: &Index) -> Vec<u8> {
    debug_assert!((1..=256).contains(&depth));
    let pb = prefix_bytes(depth);
    let mut k = Vec::with_capacity(4 + pb + 9);
    k.push(NODE);
    k.extend_from_slice(&(shard as u16).to_be_bytes());
    k.push((depth - 1) as u8);
    k.extend_from_slice(&prefix[..pb]);
    k
}

pub(crate) fn node_key(shard: u32, depth: usize, prefix: &Index, rev: u64) -> Vec<u8> {
    let mut k = node_pos_key(shard, depth, prefix);
    put_compact(&mut k, rev);
    k
}

/// Prefix of every node key of `shard`.
pub(crate) fn node_shard_prefix(shard: u32) -> Vec<u8> {
    let mut k = vec![NODE];
    k.extend_from_slice(&(shard as u16).to_be_bytes());
    k
}

/// Parses a node key known to be at `depth`: returns `(prefix, rev)`.
pub(crate) fn parse_node_key(key: &[u8], depth: usize) -> Result<(Index, u64)> {
    let pb = prefix_bytes(depth);
    if key.len() < 4 + pb + 1 || key[0] != NODE || key[3] as usize != depth - 1 {
        return Err(corrupt("node key of unexpected shape"));
    }
    let mut prefix = [0u8; 32];
    prefix[..pb].copy_from_slice(&key[4..4 + pb]);
    if mask(&prefix, depth) != prefix {
        return Err(corrupt("node key prefix has bits below its depth"));
    }
    let (rev, n) = get_compact(&key[4 + pb..])?;
    if 4 + pb + n != key.len() {
        return Err(corrupt("trailing bytes in node key"));
    }
    Ok((prefix, rev))
}

/// Parses any node key of any depth: `(depth, prefix, rev)`.
pub(crate) fn parse_any_node_key(key: &[u8]) -> Result<(usize, Index, u64)> {
    let depth = *key.get(3).ok_or_else(|| corrupt("short node key"))? as usize + 1;
    let (p, r) = parse_node_key(key, depth)?;
    Ok((depth, p, r))
}

pub(crate) fn leaf_prefix(index: &Index) -> Vec<u8> {
    let mut k = Vec::with_capacity(42);
    k.push(LEAF);
    k.extend_from_slice(index);
    k
}

pub(crate) fn leaf_key(index: &Index, version: u64) -> Vec<u8> {
    let mut k = leaf_prefix(index);
    put_compact(&mut k, version);
    k
}

/// Parses a leaf key: `(index, version)`.
pub(crate) fn parse_leaf_key(key: &[u8]) -> Result<(Index, u64)> {
    if key.len() < 34 || key[0] != LEAF {
        return Err(corrupt("leaf key of unexpected shape"));
    }
    let index: Index = key[1..33].try_into().expect("32 bytes");
    let (v, n) = get_compact(&key[33..])?;
    if 33 + n != key.len() {
        return Err(corrupt("trailing bytes in leaf key"));
    }
    Ok((index, v))
}

pub(crate) fn rev_key(shard: u32, rev: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(11);
    k.push(REV);
    k.extend_from_slice(&(shard as u16).to_be_bytes());
    k.extend_from_slice(&rev.to_be_bytes());
    k
}

pub(crate) fn meta_shard_key(shard: u32) -> Vec<u8> {
    let mut k = META_SHARD.to_vec();
    k.extend_from_slice(&(shard as u16).to_be_bytes());
    k
}

/// Leaf record value: `commitment || prev`, then `nonce || value` while the
/// opening is kept.
pub(crate) fn leaf_value(leaf: &Leaf, opening: Option<(&[u8; 32], &[u8])>) -> Vec<u8> {
    let extra = opening.map_or(0, |(_, v)| 32 + v.len());
    let mut v = Vec::with_capacity(64 + extra);
    v.extend_from_slice(&leaf.commitment);
    v.extend_from_slice(&leaf.prev);
    if let Some((nonce, value)) = opening {
        v.extend_from_slice(nonce);
        v.extend_from_slice(value);
    }
    v
}

/// The opening part of a leaf record value, `None` when it was forgotten
/// (or never stored).
pub(crate) fn parse_opening(v: &[u8]) -> Result<Option<([u8; 32], Vec<u8>)>> {
    match v.len() {
        64 => Ok(None),
        n if n >= 96 => Ok(Some((v[64..96].try_into().expect("32"), v[96..].to_vec()))),
        _ => Err(corrupt("leaf record of unexpected shape")),
    }
}

pub(crate) fn parse_leaf(index: Index, version: u64, v: &[u8]) -> Result<Leaf> {
    if !(v.len() == 64 || v.len() >= 96) || version == 0 {
        return Err(corrupt("leaf record of unexpected shape"));
    }
    let leaf = Leaf {
        index,
        version,
        commitment: v[..32].try_into().expect("32 bytes"),
        prev: v[32..64].try_into().expect("32 bytes"),
    };
    if (version == 1) != (leaf.prev == ZERO) {
        return Err(corrupt("leaf record with a broken version link"));
    }
    Ok(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_is_order_preserving() {
        let vals = [
            0u64,
            1,
            2,
            255,
            256,
            65535,
            65536,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ];
        let enc: Vec<Vec<u8>> = vals
            .iter()
            .map(|v| {
                let mut o = Vec::new();
                put_compact(&mut o, *v);
                o
            })
            .collect();
        for w in enc.windows(2) {
            assert!(w[0] < w[1]);
        }
        for (v, e) in vals.iter().zip(&enc) {
            assert_eq!(get_compact(e).unwrap(), (*v, e.len()));
            assert!(e[0] < MAX_SUFFIX);
        }
        assert!(get_compact(&[2, 0, 5]).is_err());
        assert!(get_compact(&[9]).is_err());
    }

    #[test]
    fn mask_bits_extend() {
        let idx = [0xFFu8; 32];
        let m = mask(&idx, 13);
        assert_eq!(m[0], 0xFF);
        assert_eq!(m[1], 0xF8);
        assert_eq!(m[2], 0);
        assert_eq!(bits(&idx, 3, 4), 15);
        let e = extend(&mask(&[0u8; 32], 4), 4, 4, 0b1010);
        assert_eq!(e[0], 0b0000_1010);
        assert_eq!(mask(&idx, 256), idx);
        assert_eq!(mask(&idx, 0), [0u8; 32]);
    }
}
