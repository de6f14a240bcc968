//! Carrying out core's commands, one at a time: sends go out on the network, appends reach the
//! rollout store (or tear, at an armed crash), events, log lines and marks go to the records,
//! and the auth store follows core's writes. The checker and the judge see each before it counts.

use agentsim_core::wire::HttpRequest;
use agentsim_core::{Command, InFlight, RequestId, RolloutItem};

use super::network::{purpose_thread, Network};
use super::Sim;
use crate::check::Observation;
use crate::scenario::Moment;

impl Sim {
    pub(super) fn execute(&mut self, command: &Command) {
        let now = self.now;
        match command {
            Command::Send { id, request, timeout_ms } => self.send(*id, request, *timeout_ms),
            Command::Append { thread, line } => {
                let json = line.to_json();
                if self.host.crash_on_append.as_deref() == Some(thread.0.as_str()) {
                    self.host.crash_on_append = None;
                    let torn = &json.as_bytes()[..json.len().div_ceil(2)];
                    if let Err(e) = self.host.store.append(&thread.0, torn) {
                        self.ledger.harness_failure(format!("rollout append failed: {e}"));
                    }
                    self.crash(&format!(
                        "crash in the middle of appending to {thread}'s rollout (torn line)"
                    ));
                    return;
                }
                let backend = self.world.backend.lock().expect("backend lock");
                let current = self.world.judged_current_runtime(now, &backend);
                self.ledger.observe(Observation::Append {
                    current: current.as_deref(),
                    backend: &backend,
                    thread,
                    item: &line.item,
                });
                if let RolloutItem::SessionState(Some(task)) = &line.item {
                    self.judge.appended_task(thread, task, self.ledger.step());
                }
                if let Err(e) = self.host.store.append_line(&thread.0, &json) {
                    self.ledger.harness_failure(format!("rollout append failed: {e}"));
                }
                self.ledger.append(now, thread, &line.item);
            }
            Command::AppendCopy { thread, bytes } => {
                if let Err(e) = self.host.store.append(&thread.0, bytes) {
                    self.ledger.harness_failure(format!("rollout copy failed: {e}"));
                }
                if self.ledger.timeline_on() {
                    let lines = bytes.iter().filter(|b| **b == b'\n').count();
                    let text = format!("append a copy of its parent's {lines} lines");
                    self.ledger.entry(now, &thread.0, crate::report::EntryKind::Append, &text);
                }
            }
            Command::Emit(event) => {
                self.ledger.observe(Observation::Event(event));
                self.judge.event(event, self.ledger.step());
                self.ledger.event(now, event);
            }
            Command::StoreIdentity(stored) => {
                self.world.store_identity(now, stored, &mut self.ledger);
            }
            Command::DeleteIdentity => self.world.delete_identity(now, &mut self.ledger),
            Command::Log(line) => self.ledger.log(now, line),
            Command::Mark(name) => self.ledger.mark(name),
        }
    }

    /// Carries out a `Send`: the network numbers the request and draws its fault and latency,
    /// the checker and the judge see it leave, armed world changes fire around the exchange, and
    /// what comes back is queued for the time it arrives.
    fn send(&mut self, id: RequestId, request: &HttpRequest, timeout_ms: u64) {
        let what = self.host.in_flight_of(id);
        let call = self.net.draw(id, self.host.generation, request, timeout_ms);
        let endpoint = call.endpoint;
        self.ledger.observe(Observation::Send { request, endpoint, what: what.as_ref() });
        if let Some(InFlight::Model(thread, turn)) = &what {
            self.judge_model_request(thread, *turn, request);
        }
        self.fire_arms(endpoint, Moment::Before);
        let exchange = self.net.exchange(self.now, request, &call);
        self.fire_arms(endpoint, Moment::Sent);
        let plan = match Network::plan(self.now, &call, exchange) {
            Ok(plan) => plan,
            Err(e) => {
                let (method, path) = (request.method.as_str(), request.path());
                self.ledger.harness_failure(format!("transport failed on {method} {path}: {e}"));
                return;
            }
        };
        if let Some(response) = plan.on_time() {
            self.ledger.observe(Observation::Response(response));
        }
        let line =
            Network::request_line(&self.ledger.clock(self.now), &call, request, &what, &plan);
        // The structured record is kept with the timeline (`sim fuzz` keeps neither).
        let record = self.ledger.timeline_on().then(|| {
            let at_ms = self.ledger.elapsed(self.now);
            Network::request_record(at_ms, &call, request, &what, &plan, line.clone())
        });
        self.ledger.request(self.now, &purpose_thread(&what), endpoint, line, record);
        self.net.schedule(plan);
    }
}
