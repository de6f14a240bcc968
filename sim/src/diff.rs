//! `sim diff`: what changed between two runs, once what differs on every line anyway is set
//! aside. Two runs of one scenario under two seeds, or before and after a change to core, differ
//! in every id, key, latency and timestamp; a raw diff drowns the one change that matters. Both
//! sides are read as snapshot texts (a `--out` folder's `snapshot.txt`, a `.snap` file, or a
//! scenario run now), each line is normalised (clocks, request numbers and latencies dropped;
//! runtime, task and session ids renamed by order of first appearance; RFC 3339 timestamps and
//! token counts masked), and the
//! sections are compared in the order a reader cares about: events, requests, rollouts, marks,
//! logs, then the timeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::run::{RunOptions, TransportKind};
use crate::scenario;

/// One side of a diff: its name (for the report) and its snapshot text.
#[derive(Clone, Debug)]
pub struct Side {
    /// What the user named.
    pub name: String,
    /// The snapshot text.
    pub text: String,
}

/// Reads a side: a folder written by `--out` (its `snapshot.txt`), a `.snap` file, or a scenario
/// (a name in `scenarios_dir` or a `.scn` path, with an optional `@SEED`) run now.
pub fn load_side(spec: &str, scenarios_dir: &Path) -> anyhow::Result<Side> {
    let path = Path::new(spec);
    let text = if path.is_dir() {
        let file = path.join("snapshot.txt");
        std::fs::read_to_string(&file)
            .with_context(|| format!("{}: not a --out folder of `sim scenario`", file.display()))?
    } else if spec.ends_with(".snap") {
        let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read {spec}"))?;
        strip_insta_header(&raw).to_owned()
    } else {
        let (name, seed) = match spec.rsplit_once('@') {
            Some((name, seed)) => {
                let seed = seed.parse::<u64>().with_context(|| {
                    format!("{spec}: the seed after `@` must be a whole number")
                })?;
                (name, Some(seed))
            }
            None => (spec, None),
        };
        let file = if name.ends_with(".scn") {
            Path::new(name).to_owned()
        } else {
            scenarios_dir.join(format!("{name}.scn"))
        };
        let scenario = scenario::load(&file)?;
        let options =
            RunOptions { seed, transport: TransportKind::Memory, ..RunOptions::default() };
        crate::engine::run(&scenario, &options)?.snapshot()
    };
    Ok(Side { name: spec.to_owned(), text })
}

/// The snapshot text of a `.snap` file: what follows insta's `---` header.
fn strip_insta_header(raw: &str) -> &str {
    raw.strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .map_or(raw, |(_, body)| body)
}

/// The comparison of two sides.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// The first differing line: section, line number in it (1-based), left, right.
    pub first: Option<(String, usize, String, String)>,
    /// Per section: lines on each side, and lines that differ.
    pub sections: Vec<(String, usize, usize, usize)>,
    /// Marks whose counts differ: name, left, right.
    pub marks: Vec<(String, u64, u64)>,
}

impl Comparison {
    /// Whether the two runs are the same once normalised.
    pub fn equivalent(&self) -> bool {
        self.first.is_none()
    }
}

/// The sections compared, in order; a rollout section is any `rollout <thread>`.
const ORDER: [&str; 6] = ["events", "requests", "rollout", "marks", "logs", "timeline"];

/// Compares two snapshot texts after normalising them.
pub fn compare(left: &str, right: &str) -> Comparison {
    let (l, r) = (sections(left), sections(right));
    let mut names: Vec<&String> = l.keys().chain(r.keys()).collect();
    names.sort_by_key(|name| {
        let rank = ORDER.iter().position(|o| name.starts_with(o)).unwrap_or(ORDER.len());
        (rank, name.to_string())
    });
    names.dedup();
    let empty = Vec::new();
    let mut out = Comparison::default();
    for name in names {
        let (a, b) = (l.get(name).unwrap_or(&empty), r.get(name).unwrap_or(&empty));
        let differ = (0..a.len().max(b.len())).filter(|i| a.get(*i) != b.get(*i)).count();
        if differ > 0 && out.first.is_none() {
            let i = (0..).find(|i| a.get(*i) != b.get(*i)).unwrap_or(0);
            let show = |s: Option<&String>| s.cloned().unwrap_or_else(|| "<nothing>".to_owned());
            out.first = Some((name.clone(), i + 1, show(a.get(i)), show(b.get(i))));
        }
        out.sections.push((name.clone(), a.len(), b.len(), differ));
        if name == "marks" {
            let (ma, mb) = (marks(a), marks(b));
            let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for key in keys {
                let (x, y) = (ma.get(key).copied().unwrap_or(0), mb.get(key).copied().unwrap_or(0));
                if x != y {
                    out.marks.push((key.clone(), x, y));
                }
            }
        }
    }
    // The header (verdict) matters too: a run that passed against one that failed.
    let (va, vb) = (verdict(left), verdict(right));
    if va != vb && out.first.is_none() {
        out.first = Some(("verdict".to_owned(), 1, va, vb));
    }
    out
}

/// The report `sim diff` prints.
pub fn render(left: &Side, right: &Side, comparison: &Comparison) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "left:  {}\nright: {}", left.name, right.name);
    match &comparison.first {
        None => {
            let _ = writeln!(
                text,
                "equivalent: no difference once ids, keys, latencies and timestamps are set aside"
            );
        }
        Some((section, line, a, b)) => {
            let _ = writeln!(
                text,
                "first divergence: {section}, line {line}\n  left:  {a}\n  right: {b}"
            );
        }
    }
    let _ = writeln!(text, "\nsection                  left  right  differing lines");
    for (name, a, b, differ) in &comparison.sections {
        // The timeline repeats the other sections: listed only when it differs.
        if name != "timeline" || *differ > 0 {
            let _ = writeln!(text, "{name:<24} {a:>5}  {b:>5}  {differ}");
        }
    }
    for (mark, a, b) in &comparison.marks {
        let _ = writeln!(text, "mark {mark}: {a} -> {b}");
    }
    text
}

fn verdict(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix("verdict: ")).unwrap_or_default().to_owned()
}

fn marks(lines: &[String]) -> BTreeMap<String, u64> {
    lines
        .iter()
        .filter_map(|l| {
            let (name, count) = l.rsplit_once(" x")?;
            Some((name.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// The snapshot's sections (`--- name (n)`), each line normalised. Ids are renamed across the
/// whole text, in order of first appearance, so the same runtime keeps one name everywhere.
fn sections(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut names = Renamer::default();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("--- ") {
            let name = header.rsplit_once(" (").map_or(header, |(n, _)| n);
            current = Some(name.to_owned());
            out.entry(name.to_owned()).or_default();
            continue;
        }
        if let (Some(section), false) = (&current, line.is_empty()) {
            out.entry(section.clone()).or_default().push(names.normalise(line));
        }
    }
    out
}

/// Renames ids by order of first appearance and masks what differs on every run.
#[derive(Default)]
struct Renamer {
    seen: BTreeMap<String, String>,
    counts: BTreeMap<&'static str, usize>,
}

impl Renamer {
    fn normalise(&mut self, line: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut words = line.split(' ').peekable();
        let mut first = true;
        while let Some(word) = words.next() {
            // Request numbers and clocks lead the line; `after 191ms` is a latency.
            if first && (is_request_number(word) || is_clock(word)) {
                continue;
            }
            if word == "after" && words.peek().is_some_and(|w| is_ms(w)) {
                words.next();
                continue;
            }
            if !first && !out.is_empty() {
                out.push(' ');
            }
            first = false;
            out.push_str(&self.mask(word));
        }
        out.trim_start().to_owned()
    }

    /// Masks timestamps and token counts, and renames runtime, task and session ids, inside one
    /// word.
    fn mask(&mut self, word: &str) -> String {
        let mut out = String::with_capacity(word.len());
        let mut rest = word;
        while !rest.is_empty() {
            if let Some(len) = timestamp_len(rest) {
                out.push_str("<time>");
                rest = &rest[len..];
                continue;
            }
            if let Some(digits) = rest.strip_prefix("_tokens\":") {
                // Token counts are drawn from the seed.
                let n = digits.bytes().take_while(u8::is_ascii_digit).count();
                out.push_str("_tokens\":<n>");
                rest = &digits[n..];
                continue;
            }
            if let Some((kind, len)) = id_len(rest) {
                let id = &rest[..len];
                let name = match self.seen.get(id) {
                    Some(name) => name.clone(),
                    None => {
                        let n = self.counts.entry(kind).or_insert(0);
                        *n += 1;
                        let name = format!("{kind}#{n}");
                        self.seen.insert(id.to_owned(), name.clone());
                        name
                    }
                };
                out.push_str(&name);
                rest = &rest[len..];
                continue;
            }
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

fn is_request_number(word: &str) -> bool {
    word.len() > 1 && word.starts_with('#') && word[1..].bytes().all(|b| b.is_ascii_digit())
}

fn is_clock(word: &str) -> bool {
    word.len() == 13 && word.starts_with('+') && word.as_bytes()[3] == b':'
}

fn is_ms(word: &str) -> bool {
    word.strip_suffix("ms").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The length of an RFC 3339 UTC timestamp at the start of `text` (`2026-04-18T14:00:00Z`,
/// with or without `.mmm`).
fn timestamp_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() + 1 {
        return None;
    }
    for (x, s) in b.iter().zip(shape) {
        let ok = if *s == b'd' { x.is_ascii_digit() } else { x == s };
        if !ok {
            return None;
        }
    }
    let mut len = shape.len();
    if b.get(len) == Some(&b'.') {
        len += 1;
        while b.get(len).is_some_and(u8::is_ascii_digit) {
            len += 1;
        }
    }
    (b.get(len) == Some(&b'Z')).then_some(len + 1)
}

/// An id at the start of `text`: `agent-<hex>` (a runtime), `task_<hex>` (a task), or a UUID
/// (a session, in `session_meta`).
fn id_len(text: &str) -> Option<(&'static str, usize)> {
    let b = text.as_bytes();
    let uuid = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if b.len() >= uuid.len()
        && b.iter().zip(uuid).all(|(c, u)| if *u == b'x' { c.is_ascii_hexdigit() } else { c == u })
    {
        return Some(("session", uuid.len()));
    }
    for (prefix, kind) in [("agent-", "runtime"), ("task_", "task")] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let hex = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
            if hex >= 4 {
                return Some((kind, prefix.len() + hex));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEFT: &str = "scenario: s\nseed: 1\nverdict: ok\n\n--- events (1)\n+00:00:00.682 A turn_complete turn-1\n\n--- requests (2)\n#1 +00:00:00.000 POST /v1/agent/register (identity registration) -> 200 after 110ms runtime=agent-364e2638\n#2 +00:00:00.538 POST /v1/agent/agent-364e2638/task/register (task registration for A) -> 200 after 144ms\n\n--- rollout A (1)\n{\"timestamp\":\"2026-04-18T14:00:00.682Z\",\"type\":\"session_state\",\"payload\":{\"agent_task\":{\"agent_runtime_id\":\"agent-364e2638\",\"task_id\":\"task_ed831e96\",\"registered_at\":\"2026-04-18T14:00:00Z\"}}}\n\n--- marks (1)\ntask_registered x1\n";

    #[test]
    fn another_seed_with_the_same_story_is_equivalent() {
        let right = LEFT
            .replace("364e2638", "99aa0011")
            .replace("ed831e96", "0d770d77")
            .replace("110ms", "12ms")
            .replace("00.682", "01.001")
            .replace("seed: 1", "seed: 2");
        let comparison = compare(LEFT, &right);
        assert!(comparison.equivalent(), "{comparison:?}");
    }

    #[test]
    fn a_changed_story_names_the_first_divergence_and_the_marks() {
        let right = LEFT
            .replace("turn_complete", "error")
            .replace("task_registered x1", "task_registered x2");
        let comparison = compare(LEFT, &right);
        let (section, line, _, b) = comparison.first.clone().expect("a divergence");
        assert_eq!((section.as_str(), line), ("events", 1));
        assert_eq!(b, "A error turn-1");
        assert_eq!(comparison.marks, vec![("task_registered".to_owned(), 1, 2)]);
    }

    #[test]
    fn ids_keep_their_identity_across_the_text() {
        // Two runtimes swapped in order are a difference, not noise.
        let two = "--- requests (2)\nruntime=agent-aaaa1111\nruntime=agent-bbbb2222\n";
        let same_again = "--- requests (2)\nruntime=agent-aaaa1111\nruntime=agent-aaaa1111\n";
        assert!(!compare(two, same_again).equivalent());
    }
}
