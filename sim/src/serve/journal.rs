//! The request journal: one [`JournalEntry`] per protocol request, the newest
//! [`JOURNAL_KEEP`] kept, each also logged through `tracing` as it is recorded.

use std::collections::VecDeque;

/// How many journal entries the server keeps: the oldest go first, so a long-running server
/// stays in bounded memory. Numbers keep counting (`GET /admin/journal?since=N` still works).
pub const JOURNAL_KEEP: usize = 10_000;

/// One protocol request as the server saw and answered it. Nothing in it is secret: no access
/// token, biscuit, signature or key, only the non-secret summaries the simulator's request log
/// uses ([`crate::report::request_summary`], [`crate::report::response_summary`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournalEntry {
    /// 1-based request number over the server's life (since the last reset).
    pub number: u64,
    /// RFC 3339 with milliseconds, by the server's clock, when the request was received.
    pub at: String,
    /// The HTTP method as received (`GET`, `POST`, or whatever the client sent).
    pub method: String,
    /// The URL path, without its query.
    pub path: String,
    /// The protocol endpoint ([`Endpoint::name`](crate::fault::Endpoint::name)); `None` for a
    /// path that is none.
    pub endpoint: Option<String>,
    /// [`crate::report::request_summary`] of the request: ` assertion=<runtime>/<task>`,
    /// ` no assertion` (a model request without one) or empty.
    pub request: String,
    /// [`FaultKind::name`](crate::fault::FaultKind::name) of the fault applied, if any.
    pub fault: Option<String>,
    /// The status answered (also the status of a held `timeout` answer); `None` for a `reset`,
    /// which closes the connection without an answer.
    pub status: Option<u16>,
    /// [`crate::report::response_summary`] of the answer (empty for a reset).
    pub answer: String,
}

/// The newest entries and the next number.
#[derive(Debug)]
pub(super) struct Journal {
    entries: VecDeque<JournalEntry>,
    recorded: u64,
}

impl Journal {
    pub(super) fn new() -> Journal {
        Journal { entries: VecDeque::new(), recorded: 0 }
    }

    /// Numbers `entry` (whatever number it carries), keeps it, logs it, and returns its number.
    pub(super) fn record(&mut self, mut entry: JournalEntry) -> u64 {
        self.recorded += 1;
        entry.number = self.recorded;
        log(&entry);
        if self.entries.len() == JOURNAL_KEEP {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        self.recorded
    }

    /// The kept entries numbered above `since`, oldest first.
    pub(super) fn since(&self, since: u64) -> Vec<JournalEntry> {
        // Numbers are consecutive, so the first entry to keep is found by arithmetic.
        let first_kept = self.recorded + 1 - self.entries.len() as u64;
        let skip = since.saturating_add(1).saturating_sub(first_kept);
        self.entries.iter().skip(usize::try_from(skip).unwrap_or(usize::MAX)).cloned().collect()
    }

    /// Requests recorded since the journal began.
    pub(super) fn requests(&self) -> u64 {
        self.recorded
    }
}

/// The `tracing` line of an entry: the same non-secret fields.
fn log(entry: &JournalEntry) {
    let fault = entry.fault.as_ref().map_or(String::new(), |f| format!(" fault={f}"));
    let status = entry.status.map_or("no answer (connection closed)".to_owned(), |s| s.to_string());
    tracing::info!(
        "#{} {} {}{}{fault} -> {status}{}",
        entry.number,
        entry.method,
        entry.path,
        entry.request,
        entry.answer
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> JournalEntry {
        JournalEntry {
            number: 0,
            at: String::new(),
            method: "GET".into(),
            path: path.into(),
            endpoint: None,
            request: String::new(),
            fault: None,
            status: Some(404),
            answer: String::new(),
        }
    }

    #[test]
    fn since_counts_past_entries_the_journal_no_longer_keeps() {
        let mut journal = Journal::new();
        for n in 0..JOURNAL_KEEP + 5 {
            journal.record(entry(&format!("/{n}")));
        }
        let all = journal.since(0);
        assert_eq!(all.len(), JOURNAL_KEEP);
        assert_eq!(all[0].number, 6);
        let last = journal.since(JOURNAL_KEEP as u64 + 3);
        let numbers: Vec<u64> = last.iter().map(|e| e.number).collect();
        assert_eq!(numbers, [JOURNAL_KEEP as u64 + 4, JOURNAL_KEEP as u64 + 5]);
        assert!(journal.since(u64::MAX).is_empty());
        assert_eq!(journal.requests(), JOURNAL_KEEP as u64 + 5);
    }
}
