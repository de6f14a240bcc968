//! Invariant 14: no secret (access token, private key, biscuit) appears in any artifact. The
//! checker collects each secret as the run hands it out and looks for all of them at the end.

use agentsim_core::wire::{self, HttpResponse};

use super::{Checker, Invariant};

impl Checker {
    /// Collects secrets from a response: the biscuit.
    pub(super) fn secrets_from_response(&mut self, response: &HttpResponse) {
        if let Some(biscuit) =
            response.header(wire::BISCUIT_RESPONSE_HEADER).and_then(|b| std::str::from_utf8(b).ok())
        {
            if !biscuit.is_empty() {
                self.secrets.push(biscuit.to_owned());
            }
        }
    }

    /// Invariant 14: no secret in any artifact text.
    pub fn check_secrets<'a>(&mut self, texts: impl Iterator<Item = &'a [u8]>) {
        let secrets: Vec<&[u8]> =
            self.secrets.iter().filter(|s| s.len() >= 8).map(|s| s.as_bytes()).collect();
        if secrets.is_empty() {
            return;
        }
        // One pass over each text for every secret at once. A run checks its texts once, so a
        // matcher that is quick to build beats a DFA that is quick to run.
        let matcher = aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
            .build(&secrets);
        let Ok(matcher) = matcher else {
            self.violate(Invariant::Harness, 0, "cannot build the secrets matcher".to_owned());
            return;
        };
        for text in texts {
            if let Some(found) = matcher.find(text) {
                let secret = secrets[found.pattern().as_usize()];
                let shown = String::from_utf8_lossy(&secret[..6]).into_owned();
                self.violate(
                    Invariant::NoSecrets,
                    0,
                    format!("a secret ({shown}…) appears in the run's output"),
                );
                return;
            }
        }
    }
}
