//! Contact verification codes: a number two people compare (in person, or
//! over a call) to confirm that each sees the other's keys as the other
//! published them.
//!
//! Key transparency proves that everyone is shown the *same* keys for a
//! label; comparing a contact code additionally proves they are the keys the
//! other person actually holds, which detects an attacker who published keys
//! of their own under that label (visible in the log, but only the owner's
//! monitor would notice).
//!
//! # Definition (suite `candor-v1`)
//!
//! For each party, `enc(label, key) = u32_be(len(label)) || label ||
//! u32_be(len(key)) || key` (`key` is the value published under the label,
//! typically the account's public keys). The two encodings are sorted
//! bytewise, so the code does not depend on who computes it, and
//!
//! ```text
//! out = BLAKE3-derive_key-XOF(context = "candor-v1 contact code",
//!                             input   = enc_low || enc_high)[0..60]
//! ```
//!
//! read as 12 chunks of 5 bytes; chunk `i` as a big-endian integer modulo
//! 100000 gives group `i`, printed as 5 decimal digits with leading zeros.
//! The code is the 12 groups (60 digits) separated by single spaces, like a
//! Signal safety number. The modulo bias (2^40 mod 10^5 over 2^40) is below
//! 10^-7 per group.
//!
//! Test vector: labels `alice` / `bob` with keys `key-a` / `key-b` (ASCII)
//! give `98847 06193 14087 46920 68863 36146 34854 12433 54326 97644 94084 62124`.
//!
//! Length prefixes make the encoding injective, so two different pairs of
//! (label, key) never hash the same input.

const CONTEXT: &str = "candor-v1 contact code";
/// Number of 5-digit groups in a code.
pub const GROUPS: usize = 12;

fn enc(label: &[u8], key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + label.len() + key.len());
    v.extend_from_slice(&(label.len() as u32).to_be_bytes());
    v.extend_from_slice(label);
    v.extend_from_slice(&(key.len() as u32).to_be_bytes());
    v.extend_from_slice(key);
    v
}

/// The 12 groups of the contact code (each `< 100000`).
pub fn contact_code_groups(
    label_a: &[u8],
    key_a: &[u8],
    label_b: &[u8],
    key_b: &[u8],
) -> [u32; GROUPS] {
    let (a, b) = (enc(label_a, key_a), enc(label_b, key_b));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(&lo);
    h.update(&hi);
    let mut out = [0u8; GROUPS * 5];
    h.finalize_xof().fill(&mut out);
    let mut groups = [0u32; GROUPS];
    for (g, chunk) in groups.iter_mut().zip(out.chunks_exact(5)) {
        let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        *g = (n % 100_000) as u32;
    }
    groups
}

/// The contact code of two parties as 12 space-separated groups of 5 digits
/// (see the module docs). Symmetric: swapping the parties gives the same code.
pub fn contact_code(label_a: &[u8], key_a: &[u8], label_b: &[u8], key_b: &[u8]) -> String {
    contact_code_groups(label_a, key_a, label_b, key_b)
        .iter()
        .map(|g| format!("{g:05}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KAT: &str = "98847 06193 14087 46920 68863 36146 34854 12433 54326 97644 94084 62124";

    #[test]
    fn shape() {
        let c = contact_code(b"alice", b"ka", b"bob", b"kb");
        assert_eq!(c.len(), 12 * 5 + 11);
        assert!(
            c.split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
    }

    #[test]
    fn known_answer_is_stable() {
        // Pinned so that an accidental change of the definition is caught:
        // two apps must compute the same code.
        let c = contact_code(b"alice", b"key-a", b"bob", b"key-b");
        assert_eq!(c, KAT);
        assert_eq!(c, contact_code(b"bob", b"key-b", b"alice", b"key-a"));
    }

    #[test]
    fn matches_blake3_derive_key() {
        // Independent path: the first 32 bytes of the derive_key XOF are
        // `blake3::derive_key`, so groups 0..6 follow from it.
        let (a, b) = (enc(b"bob", b"key-b"), enc(b"alice", b"key-a"));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let key = blake3::derive_key(CONTEXT, &[lo, hi].concat());
        let groups = contact_code_groups(b"alice", b"key-a", b"bob", b"key-b");
        for (i, g) in groups.iter().take(6).enumerate() {
            let n = key[i * 5..i * 5 + 5]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            assert_eq!(*g, (n % 100_000) as u32);
        }
    }

    #[test]
    fn boundaries_matter() {
        // Without length prefixes these two would collide.
        assert_ne!(
            contact_code(b"ab", b"c", b"x", b"y"),
            contact_code(b"a", b"bc", b"x", b"y")
        );
    }

    proptest! {
        #[test]
        fn symmetric(la in any::<Vec<u8>>(), ka in any::<Vec<u8>>(), lb in any::<Vec<u8>>(), kb in any::<Vec<u8>>()) {
            prop_assert_eq!(contact_code(&la, &ka, &lb, &kb), contact_code(&lb, &kb, &la, &ka));
        }

        #[test]
        fn key_change_changes_code(l in any::<Vec<u8>>(), k in any::<Vec<u8>>(), k2 in any::<Vec<u8>>()) {
            prop_assume!(k != k2);
            prop_assert_ne!(contact_code(&l, &k, b"bob", b"kb"), contact_code(&l, &k2, b"bob", b"kb"));
        }
    }
}
