//! Every random stream of a run, derived from its one master seed.
//!
//! A stream is ChaCha20 keyed with SHA-256 of a version tag, the master seed and the stream's
//! label. ChaCha20 and SHA-256 are fixed algorithms, so a seed means the same thing on every
//! machine and every release; bump [`SEED_VERSION`] if a derivation ever changes on purpose.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng as _};
use sha2::{Digest as _, Sha256};

/// Changes whenever the meaning of a seed changes.
pub const SEED_VERSION: &str = "agentsim-seed-v1";

/// 32 bytes for the stream `label` of run `master`.
pub fn bytes32(master: u64, label: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(SEED_VERSION.as_bytes());
    hash.update([0]);
    hash.update(master.to_le_bytes());
    hash.update(label.as_bytes());
    hash.finalize().into()
}

/// The random stream `label` of run `master`.
pub fn stream(master: u64, label: &str) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(bytes32(master, label))
}

/// A uniform draw from `low..=high` (`low <= high`).
pub fn uniform(rng: &mut ChaCha20Rng, low: u64, high: u64) -> u64 {
    debug_assert!(low <= high);
    let span = high - low + 1;
    // Modulo bias is irrelevant at these spans; what matters is that it is portable.
    low + rng.next_u64() % span
}

/// Lower-case hex of `n` bytes from `rng`.
pub fn hex(rng: &mut ChaCha20Rng, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_stable_across_releases() {
        // Golden values: if one changes, every recorded seed (scenarios, fuzz findings, CI logs)
        // changes meaning. Bump SEED_VERSION on purpose instead, and record the new values.
        // The key is plain SHA-256 of the documented input (Python's hashlib gives the same).
        let key: String = bytes32(42, "latency").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key, "9d6e9f8867c612de8130d95574c6eb254a12e171d6ea02a8d7f9bf4e45e02351");
        let mut rng = stream(42, "latency");
        assert_eq!(rng.next_u64(), 10_846_366_087_426_194_906);
        assert_eq!(uniform(&mut rng, 5, 250), 62);
        assert_eq!(hex(&mut stream(7, "token/acct-1"), 8), "b2a6eb74312a183f");
        assert_ne!(bytes32(42, "latency"), bytes32(43, "latency"));
        assert_ne!(bytes32(42, "latency"), bytes32(42, "faults"));
    }
}
