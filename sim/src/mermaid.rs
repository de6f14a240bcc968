//! A run drawn as a Mermaid `sequenceDiagram`: the threads, the process (core), and the backend
//! endpoints a run called are the participants; requests, answers, faults, rollout appends and
//! events are the messages; steps, logs, crashes and world changes are notes, each stamped with
//! the virtual time. GitHub renders Mermaid in Markdown, so `run.md` (written by `--out`) and a CI
//! job summary show the picture where a reviewer would otherwise read a timeline.
//!
//! Built from the structured timeline ([`crate::report::Entry`]): a run kept without a timeline
//! (`sim fuzz` cases) has nothing to draw until it is replayed with one.

use std::fmt::Write as _;

use crate::fault::Endpoint;
use crate::report::{Entry, EntryKind, RunReport};

/// The process, the participant every request leaves from and every answer comes back to.
const CORE: &str = "core";

/// The participant id and label of an endpoint (`backend`: a path outside the protocol).
fn endpoint_participant(endpoint: Option<Endpoint>) -> (&'static str, &'static str) {
    match endpoint {
        Some(Endpoint::Biscuit) => ("biscuit", "GET /authenticate_app_v2"),
        Some(Endpoint::IdentityRegister) => ("identity", "POST /v1/agent/register"),
        Some(Endpoint::TaskRegister) => ("task", "POST /v1/agent/RUNTIME/task/register"),
        Some(Endpoint::Model) => ("model", "POST /v1/responses"),
        None => ("backend", "backend (other paths)"),
    }
}

/// The `sequenceDiagram` of a run, as Mermaid text (no Markdown fence).
pub fn diagram(report: &RunReport) -> String {
    render(&report.scenario, &report.verdict(), &report.tally.entries)
}

/// `run.md`: the scenario, its verdict and replay command, and the diagram in a Mermaid fence.
pub fn run_markdown(report: &RunReport, replay: &str) -> String {
    let mut text = format!("# {}\n\n", report.scenario);
    if !report.description.is_empty() {
        let _ = writeln!(text, "{}\n", report.description);
    }
    let _ = writeln!(text, "**{}**\n", report.verdict());
    for failure in &report.failed_expectations {
        let _ = writeln!(text, "- {failure}");
    }
    if let Some(v) = &report.violation {
        let _ = writeln!(text, "- step {}: {}: {}", v.step, v.invariant, v.message);
    }
    let _ = writeln!(text, "\nReplay: `{replay}`\n\n```mermaid\n{}```", diagram(report));
    text
}

/// Renders entries; `title` and `verdict` become the diagram's first note.
pub fn render(title: &str, verdict: &str, entries: &[Entry]) -> String {
    let threads = threads_of(entries);
    let mut endpoints: Vec<Option<Endpoint>> = Vec::new();
    for entry in entries {
        if let EntryKind::Request(e) | EntryKind::Answer(e) | EntryKind::Failed(e) = entry.kind {
            if !endpoints.contains(&e) {
                endpoints.push(e);
            }
        }
    }
    endpoints.sort_by_key(|e| {
        e.map_or(usize::MAX, |e| Endpoint::ALL.iter().position(|x| *x == e).unwrap_or(0))
    });
    let mut out = String::from("sequenceDiagram\n");
    for (i, name) in threads.iter().enumerate() {
        let _ = writeln!(out, "    participant t{i} as {}", clean(&format!("thread {name}")));
    }
    let _ = writeln!(out, "    participant {CORE} as process (core)");
    for endpoint in &endpoints {
        let (id, label) = endpoint_participant(*endpoint);
        let _ = writeln!(out, "    participant {id} as {}", clean(label));
    }
    let last = endpoints.last().map_or(CORE, |e| endpoint_participant(*e).0);
    let first = if threads.is_empty() { CORE.to_owned() } else { "t0".to_owned() };
    let _ =
        writeln!(out, "    Note over {first},{last}: {}", clean(&format!("{title}: {verdict}")));
    for entry in entries {
        let at = crate::report::clock_ms(entry.at_ms);
        let who = threads.iter().position(|t| *t == entry.who).map(|i| format!("t{i}"));
        let shown = strip_arrow(&entry.text);
        // A request's log text ends with its outcome; the answer is drawn as its own arrow.
        let shown = match entry.kind {
            EntryKind::Request(_) => shown.split_once(" -> ").map_or(shown, |(sent, _)| sent),
            _ => shown,
        };
        let text = clean(&format!("{at} {shown}"));
        let line = match (entry.kind, who) {
            (EntryKind::Step, _) => format!("Note over {first},{last}: {text}"),
            (EntryKind::Request(e), _) => format!("{CORE}->>{}: {text}", endpoint_participant(e).0),
            (EntryKind::Answer(e), _) => format!("{}-->>{CORE}: {text}", endpoint_participant(e).0),
            (EntryKind::Failed(e), _) => format!("{}--x{CORE}: {text}", endpoint_participant(e).0),
            (EntryKind::Append, Some(t)) => format!("{CORE}->>{t}: {text}"),
            (EntryKind::Event, Some(t)) => format!("{CORE}-->>{t}: {text}"),
            (EntryKind::Note, Some(t)) => format!("Note over {t}: {text}"),
            (EntryKind::Log, _) => format!("Note right of {CORE}: {text}"),
            (_, None) => format!("Note over {CORE}: {text}"),
        };
        let _ = writeln!(out, "    {line}");
    }
    out
}

/// The threads the entries name, in order of first appearance.
fn threads_of(entries: &[Entry]) -> Vec<String> {
    let mut threads: Vec<String> = Vec::new();
    for entry in entries {
        if entry.who != "-" && !threads.contains(&entry.who) {
            threads.push(entry.who.clone());
        }
    }
    threads
}

/// The timeline's arrows say the direction, which the diagram draws instead.
fn strip_arrow(text: &str) -> &str {
    text.strip_prefix("→ ")
        .or_else(|| text.strip_prefix("← "))
        .or_else(|| text.strip_prefix("✗ "))
        .unwrap_or(text)
}

/// Text Mermaid accepts in a message, note or alias: one line; `;` (a statement separator), `#`
/// (an entity) and `<`, `>` (HTML) written as entity codes.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: u64, who: &str, kind: EntryKind, text: &str) -> Entry {
        Entry { at_ms, who: who.to_owned(), kind, text: text.to_owned() }
    }

    #[test]
    fn a_turn_draws_as_messages_between_declared_participants() {
        let entries = [
            entry(0, "-", EntryKind::Step, "step 1: turn A"),
            entry(1, "A", EntryKind::Request(Some(Endpoint::Model)), "→ POST /v1/responses"),
            entry(9, "A", EntryKind::Answer(Some(Endpoint::Model)), "← 200 model request"),
            entry(9, "A", EntryKind::Append, "append response_item"),
            entry(9, "A", EntryKind::Event, "event turn_complete #1; done <ok>"),
        ];
        let text = render("t", "PASS", &entries);
        assert_eq!(
            text,
            "sequenceDiagram\n    participant t0 as thread A\n    participant core as process (core)\n    participant model as POST /v1/responses\n    Note over t0,model: t: PASS\n    Note over t0,model: +00:00:00.000 step 1: turn A\n    core->>model: +00:00:00.001 POST /v1/responses\n    model-->>core: +00:00:00.009 200 model request\n    core->>t0: +00:00:00.009 append response_item\n    core-->>t0: +00:00:00.009 event turn_complete #35;1#59; done #lt;ok#gt;\n"
        );
    }
}
