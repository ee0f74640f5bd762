//! Splitting the configured datastores between replicas: `polling.shard = "i/n"` / `--shard i/n`.
//!
//! When one exporter is not enough (thousands of datastores, or an API quota split across
//! regions), N replicas share one configuration file and each polls a disjoint part of it, so
//! that Prometheus (or Thanos/Mimir above it) sees every datastore exactly once. Replicas do not
//! talk to each other: each one decides alone, from a datastore's id and the shard count, whether
//! the datastore is its own. That decision must therefore be the same on every replica, whatever
//! its version, platform or start time.
//!
//! **Rendezvous (highest-random-weight) hashing.** Every shard `s` in `0..n` gives each datastore
//! id a weight, and the shard with the highest weight owns the datastore. Going from `n` to `n + 1`
//! replicas only adds one contender per id, so a datastore either stays where it was or moves to
//! the new shard `n`: about `1/(n + 1)` of the datastores move, and nothing moves between the old
//! replicas (their counters and alerts stay where they were). Cost: `n` hashes per datastore at
//! each (re)load, nothing per poll or scrape.
//!
//! **The hash is fixed forever**, hand-written (here and in `model::fnv1a64`) so that no
//! dependency upgrade can change it (std's `DefaultHasher`/`RandomState` make no such promise, and
//! `RandomState` is even seeded per process):
//!
//! ```text
//! weight(id, s) = mix64(fnv1a64(utf8 bytes of id) XOR mix64(s))
//! fnv1a64: offset basis 0xcbf29ce484222325, prime 0x100000001b3 (FNV-1a, 64-bit)
//! mix64:   the SplitMix64 output function
//!          z = x + 0x9e3779b97f4a7c15
//!          z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
//!          z = (z ^ (z >> 27)) * 0x94d049bb133111eb
//!          z ^ (z >> 31)                       (all arithmetic wrapping, mod 2^64)
//! owner(id, n) = the s in 0..n with the highest weight (the lowest such s on a tie)
//! ```
//!
//! FNV-1a alone mixes its last bytes poorly, which would bias the per-shard weights of one id;
//! the SplitMix64 finaliser fixes that. A golden test pins a few assignments: if it fails, the
//! hash changed and every multi-replica deployment would reshuffle on upgrade — do not "fix" the
//! test, restore the hash.

use std::fmt;
use std::str::FromStr;

use crate::model::fnv1a64;

/// The most replicas one configuration can be split between. Far beyond any real need; it bounds
/// the per-datastore hashing cost at load time.
pub(crate) const MAX_SHARDS: u32 = 1000;

/// One replica's part of the configuration: shard `index` of `count` (written `"index/count"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a shard string was rejected. The messages are written to follow `polling.shard: ` or the
/// flag name, and say how to write a good value; they never repeat it (the file's line and column,
/// or the flag parser, say where it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("is not a shard; write it as \"INDEX/COUNT\" with whole numbers, like \"0/3\" for the first of 3 replicas (\"0/1\", the default, polls every datastore)")]
    Syntax,
    #[error("has no index before the \"/\"; write \"INDEX/COUNT\" like \"0/3\" (in deploy/kubernetes/statefulset the index is the pod label apps.kubernetes.io/pod-index: Kubernetes 1.28 or later sets it)")]
    NoIndex,
    #[error("has a count out of range; use 1 to {MAX_SHARDS} replicas")]
    Count,
    #[error("has an index not below the count; indexes run from 0 to COUNT - 1 (of 3 replicas the first is \"0/3\", the last \"2/3\")")]
    Index,
}

impl Shard {
    /// One replica polling everything: the default.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`, checked like a parsed one.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        format!("{index}/{count}").parse()
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// True for "0/1": no splitting.
    pub(crate) fn is_all(&self) -> bool {
        self.count == 1
    }

    /// Whether this shard polls the datastore with this id.
    pub fn owns(&self, datastore_id: &str) -> bool {
        self.count <= 1 || owner(datastore_id, self.count) == self.index
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::ALL
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// `"INDEX/COUNT"`, whole decimal numbers, spaces around either tolerated.
    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let number = |part: &str| -> Result<u64, ShardError> {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ShardError::Syntax);
            }
            // Digits only: the only failure left is overflow, which is out of range anyway.
            Ok(part.parse::<u64>().unwrap_or(u64::MAX))
        };
        let (index, count) = text.split_once('/').ok_or(ShardError::Syntax)?;
        if index.trim().is_empty() && !count.trim().is_empty() {
            return Err(ShardError::NoIndex);
        }
        let (index, count) = (number(index)?, number(count)?);
        if !(1..=u64::from(MAX_SHARDS)).contains(&count) {
            return Err(ShardError::Count);
        }
        if index >= count {
            return Err(ShardError::Index);
        }
        // Both are at most MAX_SHARDS here.
        Ok(Shard {
            index: u32::try_from(index).unwrap_or(0),
            count: u32::try_from(count).unwrap_or(1),
        })
    }
}

/// The shard in `0..count` that owns `datastore_id` (0 when `count` is 0 or 1).
pub fn owner(datastore_id: &str, count: u32) -> u32 {
    let id = fnv1a64(datastore_id.as_bytes());
    let mut best = 0;
    let mut best_weight = 0;
    for shard in 0..count.max(1) {
        let w = weight_of(id, shard);
        if shard == 0 || w > best_weight {
            best = shard;
            best_weight = w;
        }
    }
    best
}

/// The weight shard `shard` gives `datastore_id` (see the module docs for the exact function);
/// the tests pin it.
#[cfg(test)]
fn weight(datastore_id: &str, shard: u32) -> u64 {
    weight_of(fnv1a64(datastore_id.as_bytes()), shard)
}

fn weight_of(id_hash: u64, shard: u32) -> u64 {
    mix64(id_hash ^ mix64(u64::from(shard)))
}

/// The SplitMix64 output function.
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic ids shaped like HealthLake's (32 hex characters).
    fn ids(n: usize) -> Vec<String> {
        (0..n as u64)
            .map(|k| format!("{:016x}{:016x}", mix64(k), mix64(k ^ 0xdead_beef)))
            .collect()
    }

    #[test]
    fn the_hash_primitives_match_their_published_definitions() {
        // FNV-1a 64 test vectors (from the FNV reference test suite).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // SplitMix64 seeded with 0 produces 0xe220a8397b1dcdaf first: mix64(0).
        assert_eq!(mix64(0), 0xe220_a839_7b1d_cdaf);
    }

    /// If this fails the hash changed, and every multi-replica deployment would reshuffle its
    /// datastores on upgrade. Restore the hash; do not update the expected values.
    #[test]
    fn golden_assignments_never_change() {
        assert_eq!(
            weight("a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4", 0),
            GOLDEN_WEIGHT,
            "the rendezvous weight function changed"
        );
        let got: Vec<(&str, [u32; 4])> = GOLDEN
            .iter()
            .map(|(id, _)| {
                (
                    *id,
                    [owner(id, 2), owner(id, 3), owner(id, 5), owner(id, 10)],
                )
            })
            .collect();
        let want: Vec<(&str, [u32; 4])> = GOLDEN.to_vec();
        assert_eq!(got, want, "the datastore → shard assignment changed");
    }

    const GOLDEN_WEIGHT: u64 = 0x93ff_4fe6_745d_6329;
    /// (id, owner with n = 2, 3, 5, 10).
    const GOLDEN: &[(&str, [u32; 4])] = &[
        ("a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4", [1, 1, 4, 6]),
        ("f6e5d4c3b2a1f6e5d4c3b2a1f6e5d4c3", [1, 1, 1, 1]),
        ("prod", [0, 2, 2, 2]),
        ("analytics", [1, 1, 1, 1]),
        ("one", [0, 2, 3, 3]),
        ("two", [0, 0, 0, 6]),
        ("three", [0, 2, 2, 2]),
    ];

    #[test]
    fn every_datastore_has_exactly_one_owner_and_shards_are_balanced() {
        let ids = ids(1000);
        for n in 1..=10u32 {
            let shards: Vec<Shard> = (0..n).map(|i| Shard::new(i, n).unwrap()).collect();
            let mut sizes = vec![0usize; n as usize];
            for id in &ids {
                let owners: Vec<u32> = shards
                    .iter()
                    .filter(|s| s.owns(id))
                    .map(Shard::index)
                    .collect();
                assert_eq!(owners.len(), 1, "{id} with n = {n}: owners {owners:?}");
                sizes[owners[0] as usize] += 1;
            }
            let fair = ids.len() as f64 / f64::from(n);
            for (i, size) in sizes.iter().enumerate() {
                assert!(
                    (*size as f64 - fair).abs() <= 0.4 * fair,
                    "n = {n}: shard {i} owns {size}, far from {fair:.0}: {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn adding_a_replica_moves_few_datastores_and_only_onto_the_new_shard() {
        let ids = ids(1000);
        for n in 1..=10u32 {
            let mut moved = 0;
            for id in &ids {
                let (before, after) = (owner(id, n), owner(id, n + 1));
                if before != after {
                    assert_eq!(
                        after, n,
                        "{id} moved from {before} to {after}, not to the new shard"
                    );
                    moved += 1;
                }
            }
            let expected = ids.len() as f64 / f64::from(n + 1);
            assert!(
                moved as f64 <= 1.5 * expected && moved as f64 >= 0.5 * expected,
                "{n} → {} replicas moved {moved} of {} datastores; expected about {expected:.0}",
                n + 1,
                ids.len()
            );
        }
    }

    #[test]
    fn parses_and_prints_index_slash_count() {
        assert_eq!("0/1".parse::<Shard>().unwrap(), Shard::ALL);
        assert_eq!(Shard::default(), Shard::ALL);
        let s: Shard = " 2 / 3 ".parse().unwrap();
        assert_eq!(
            (s.index(), s.count(), s.to_string()),
            (2, 3, "2/3".to_owned())
        );
        assert_eq!("999/1000".parse::<Shard>().unwrap().count(), 1000);
        assert!(Shard::ALL.is_all() && !s.is_all());
        assert!(Shard::ALL.owns("anything"));
    }

    #[test]
    fn bad_shards_say_what_is_wrong_and_how_to_write_one() {
        let cases = [
            ("", "is not a shard; write it as \"INDEX/COUNT\""),
            ("3", "is not a shard"),
            ("1/2/3", "is not a shard"),
            ("-1/2", "is not a shard"),
            ("a/b", "is not a shard"),
            ("1/", "is not a shard"),
            (
                "/3",
                "has no index before the \"/\"; write \"INDEX/COUNT\" like \"0/3\"",
            ),
            ("/", "is not a shard"),
            ("+1/2", "is not a shard"),
            ("0/0", "has a count out of range; use 1 to 1000 replicas"),
            ("0/1001", "has a count out of range"),
            ("0/99999999999999999999999", "has a count out of range"),
            (
                "3/2",
                "has an index not below the count; indexes run from 0 to COUNT - 1",
            ),
            (
                "2/2",
                "(of 3 replicas the first is \"0/3\", the last \"2/3\")",
            ),
        ];
        for (text, expected) in cases {
            let message = text.parse::<Shard>().unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?}: {message}");
            if text.len() > 2 {
                assert!(!message.contains(text), "{text:?} repeated: {message}");
            }
        }
        assert!(Shard::new(1, 1).is_err());
    }
}
