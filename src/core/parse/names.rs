//! A hash map keyed by chain names, with a cheap hash.
//!
//! Building a dump looks a chain up for every rule; SipHash (the std default) costs more there than the
//! lookup itself. The keys come from the text being parsed, so the worst a crafted dump could do with
//! collisions is slow its own parse down.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from chain names (borrowed from the input) to `V`.
pub(crate) type NameMap<'a, V> = HashMap<&'a str, V, BuildHasherDefault<NameHasher>>;

/// A multiply-rotate hash over 8-byte words (the FxHash scheme).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl NameHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            // Always 8 bytes long; the fallback is never taken.
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word.iter_mut().zip(rest).for_each(|(w, b)| *w = *b);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_their_values() {
        let mut map = NameMap::default();
        let names: Vec<String> = (0..5000).map(|i| format!("KUBE-SEP-{i:016X}")).collect();
        for (i, n) in names.iter().enumerate() {
            map.insert(n.as_str(), i);
        }
        assert_eq!(map.len(), names.len());
        for (i, n) in names.iter().enumerate() {
            assert_eq!(map.get(n.as_str()), Some(&i));
        }
        assert_eq!(map.get("KUBE-SEP-"), None);
        assert_eq!(map.get(""), None);
    }
}
