//! A policy set of `sim compare`: the scenario header's policy keys, `expiry`, `persist_task`
//! and `flag`, written `key=value,key=value` (`expiry=as_shipped,persist_task=true`). A key left
//! out keeps the scenario header's default.

use std::fmt;

use agentsim_core::ExpiryPolicy;

use crate::scenario::ScenarioConfig;

/// One set of policies a comparison runs every session under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `expiry`: what happens when the identity expires or is refused.
    pub expiry: ExpiryPolicy,
    /// `persist_task`: whether tasks are written to the rollout.
    pub persist_task: bool,
    /// `flag`: the `use_agent_identity` feature flag.
    pub use_agent_identity: bool,
}

/// The policy keys, in the order a policy's label writes them.
pub const POLICY_KEYS: [&str; 3] = ["expiry", "persist_task", "flag"];

/// The three policy sets of the design's open questions: the default, the reference design's
/// expiry, and tasks kept in memory only.
pub const DEFAULT_POLICIES: [&str; 3] = [
    "expiry=reacquire,persist_task=true",
    "expiry=as_shipped,persist_task=true",
    "expiry=reacquire,persist_task=false",
];

/// A policy set that cannot be read; the message says what to write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad policy {text:?}: {reason}")]
pub struct PolicyError {
    /// The text given.
    pub text: String,
    /// What is wrong and what to write instead.
    pub reason: String,
}

impl Policy {
    /// Parses `key=value[,key=value...]`; each key at most once.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let bad = |reason: String| PolicyError { text: text.to_owned(), reason };
        let defaults = ScenarioConfig::default();
        let mut policy = Policy {
            expiry: defaults.expiry,
            persist_task: defaults.persist_task,
            use_agent_identity: defaults.use_agent_identity,
        };
        let mut seen: Vec<&str> = Vec::new();
        for pair in text.split(',').map(str::trim) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                bad(format!(
                    "expected key=value, found {pair:?}: e.g. expiry=reacquire,persist_task=true"
                ))
            })?;
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(bad(format!("{key} is given twice")));
            }
            match key {
                "expiry" => {
                    policy.expiry = match value {
                        "reacquire" => ExpiryPolicy::Reacquire,
                        "as_shipped" => ExpiryPolicy::AsShipped,
                        _ => {
                            return Err(bad(format!(
                                "expiry is reacquire or as_shipped, not {value:?}"
                            )))
                        }
                    }
                }
                "persist_task" => {
                    policy.persist_task = match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(bad(format!(
                                "persist_task is true or false, not {value:?}"
                            )))
                        }
                    }
                }
                "flag" => {
                    policy.use_agent_identity = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad(format!("flag is on or off, not {value:?}"))),
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "unknown policy key {key:?}: expected one of {}",
                        POLICY_KEYS.join(", ")
                    )))
                }
            }
            seen.push(key);
        }
        Ok(policy)
    }

    /// Applies the policy to a scenario's header.
    pub fn apply(&self, config: &mut ScenarioConfig) {
        config.expiry = self.expiry;
        config.persist_task = self.persist_task;
        config.use_agent_identity = self.use_agent_identity;
    }

    /// A name for files: `reacquire-persist` and the like.
    pub fn slug(&self) -> String {
        let mut slug = format!(
            "{}-{}",
            expiry_name(self.expiry),
            if self.persist_task { "persist" } else { "memory" }
        );
        if !self.use_agent_identity {
            slug.push_str("-flag-off");
        }
        slug
    }
}

/// The label reports use: `expiry` and `persist_task` always, `flag` when it is off.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expiry={},persist_task={}", expiry_name(self.expiry), self.persist_task)?;
        if !self.use_agent_identity {
            f.write_str(",flag=off")?;
        }
        Ok(())
    }
}

fn expiry_name(expiry: ExpiryPolicy) -> &'static str {
    match expiry {
        ExpiryPolicy::Reacquire => "reacquire",
        ExpiryPolicy::AsShipped => "as_shipped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_reads_back_from_its_label() {
        for text in
            DEFAULT_POLICIES.into_iter().chain(["expiry=as_shipped,persist_task=false,flag=off"])
        {
            let policy = Policy::parse(text).unwrap();
            assert_eq!(policy.to_string(), text);
            assert_eq!(Policy::parse(&policy.to_string()), Ok(policy));
        }
        let short = Policy::parse("persist_task=false").unwrap();
        assert_eq!(short.to_string(), "expiry=reacquire,persist_task=false");
    }

    #[test]
    fn a_bad_policy_says_what_to_write() {
        let reason = |t: &str| Policy::parse(t).unwrap_err().reason;
        assert_eq!(reason("expiry=never"), "expiry is reacquire or as_shipped, not \"never\"");
        assert_eq!(
            reason("ttl=1h"),
            "unknown policy key \"ttl\": expected one of expiry, persist_task, flag"
        );
        assert_eq!(reason("expiry=reacquire,expiry=as_shipped"), "expiry is given twice");
        assert!(reason("reacquire").starts_with("expected key=value"));
    }
}
