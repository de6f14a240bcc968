//! The network between the process and the backend, in virtual time. Each request is numbered,
//! its fault and latency are drawn from their seeded streams, the transport carries it, and what
//! comes back is queued at the time it arrives, ties broken by a seeded draw: an answer, a failure,
//! or both (the client times out, and the answer still arrives later, for core to ignore). The
//! queue is the loop's event queue; a crash empties it.

use std::collections::BTreeMap;

use agentsim_core::wire::{HttpRequest, HttpResponse};
use agentsim_core::{InFlight, RequestFailure, RequestId, Timestamp};
use rand_chacha::ChaCha20Rng;
use rand_core::RngCore as _;

use crate::backend::Answer;
use crate::fault::{Endpoint, FaultKind, FaultPlan};
use crate::oracle::{self, Seen};
use crate::report;
use crate::seed;
use crate::transport::{SharedBackend, Transport, TransportError};

/// What arrives for a request, queued for the time it arrives.
pub(super) enum Scheduled {
    Deliver {
        generation: u32,
        id: RequestId,
        endpoint: Endpoint,
        response: HttpResponse,
        /// The request's number in the request log.
        number: u64,
        /// What a correct client learns from it, by the backend's records (for the oracle).
        seen: Seen,
    },
    Fail {
        generation: u32,
        id: RequestId,
        failure: RequestFailure,
        number: u64,
    },
}

/// The event queue and what a request meets on its way to the backend.
pub(super) struct Network {
    /// Ordered by (virtual time, seeded tie-break, sequence).
    queue: BTreeMap<(Timestamp, u64, u64), Scheduled>,
    next_seq: u64,
    latency_rng: ChaCha20Rng,
    fault_rng: ChaCha20Rng,
    order_rng: ChaCha20Rng,
    latency_ms: (u64, u64),
    faults: FaultPlan,
    transport: Box<dyn Transport>,
    /// The backend behind the transport: its clock is set before each exchange, and its record
    /// of what it answered is taken after.
    backend: SharedBackend,
    /// Requests sent so far: the request log numbers them.
    sent: u64,
}

/// One request as it leaves: who sent it, its number and what was drawn for it.
pub(super) struct Call {
    pub(super) id: RequestId,
    pub(super) generation: u32,
    pub(super) number: u64,
    pub(super) endpoint: Option<Endpoint>,
    pub(super) fault: Option<FaultKind>,
    pub(super) latency: u64,
    pub(super) timeout_ms: u64,
}

/// What the transport gave back, with the backend's record of what it answered.
pub(super) struct Exchange {
    outcome: Result<HttpResponse, TransportError>,
    answer: Option<Answer>,
}

/// What to queue for one call: what the client meets first (the answer, or the failure it sees),
/// an answer that arrives after the client gave up, and the outcome in words.
pub(super) struct Plan {
    first: (Timestamp, Scheduled),
    late: Option<(Timestamp, Scheduled)>,
    outcome: String,
    /// What the backend answered (status, [`report::response_summary`]), on time or not;
    /// `None` for a reset, which never reaches it.
    answered: Option<(u16, String)>,
}

impl Plan {
    /// The answer the client receives in time, if that is what comes first.
    pub(super) fn on_time(&self) -> Option<&HttpResponse> {
        match &self.first.1 {
            Scheduled::Deliver { response, .. } => Some(response),
            Scheduled::Fail { .. } => None,
        }
    }
}

impl Network {
    pub(super) fn new(
        seed: u64,
        latency_ms: (u64, u64),
        faults: FaultPlan,
        transport: Box<dyn Transport>,
        backend: SharedBackend,
    ) -> Network {
        Network {
            queue: BTreeMap::new(),
            next_seq: 0,
            latency_rng: seed::stream(seed, "latency"),
            fault_rng: seed::stream(seed, "faults"),
            order_rng: seed::stream(seed, "order"),
            latency_ms,
            faults,
            transport,
            backend,
            sent: 0,
        }
    }

    /// Numbers a request and draws its fault, then its latency: every request draws both, in
    /// this order, so one decision never shifts the draws of the next.
    pub(super) fn draw(
        &mut self,
        id: RequestId,
        generation: u32,
        request: &HttpRequest,
        timeout_ms: u64,
    ) -> Call {
        let endpoint = Endpoint::of_path(request.path());
        self.sent += 1;
        let fault = match endpoint {
            Some(endpoint) => {
                let rng = &mut self.fault_rng;
                self.faults.decide(endpoint, || rng.next_u32())
            }
            None => None,
        };
        let latency = seed::uniform(&mut self.latency_rng, self.latency_ms.0, self.latency_ms.1);
        Call { id, generation, number: self.sent, endpoint, fault, latency, timeout_ms }
    }

    /// The transport carries the request to the backend, whose clock reads `now`.
    pub(super) fn exchange(
        &mut self,
        now: Timestamp,
        request: &HttpRequest,
        call: &Call,
    ) -> Exchange {
        self.backend.lock().expect("backend lock").set_now(now);
        let outcome = self.transport.exchange(request, call.fault.as_ref());
        let answer = self.backend.lock().expect("backend lock").take_last_answer();
        Exchange { outcome, answer }
    }

    /// What arrives for `call`, and when. `Err`: the transport itself failed (not a fault).
    pub(super) fn plan(now: Timestamp, call: &Call, exchange: Exchange) -> Result<Plan, String> {
        let Call { id, generation, number, endpoint, latency, timeout_ms, .. } = *call;
        let fault = &call.fault;
        let answer = exchange.answer;
        let answered = exchange
            .outcome
            .as_ref()
            .ok()
            .map(|response| (response.status, report::response_summary(endpoint, response)));
        let mut late = None;
        let (at, scheduled, outcome) = match (exchange.outcome, fault) {
            (Err(TransportError::Reset), _) => {
                let at = now.plus_ms(latency.min(timeout_ms));
                (
                    at,
                    Scheduled::Fail { generation, id, failure: RequestFailure::Connection, number },
                    "connection reset".to_owned(),
                )
            }
            (Err(TransportError::Io(e)), _) => return Err(e),
            // The backend handled the request but the client times out first: with a timeout
            // fault the answer comes `latency` after the timeout, and an answer slower than the
            // timeout (spec section 2: every call has 15 s, however the latency range was written)
            // comes at `latency`. Either way it still arrives, and the core must ignore it.
            (Ok(response), fault)
                if matches!(fault, Some(FaultKind::Timeout)) || latency >= timeout_ms =>
            {
                let (late_at, text) = if matches!(fault, Some(FaultKind::Timeout)) {
                    (timeout_ms + latency, format!("no answer: times out after {timeout_ms}ms, the answer arrives {latency}ms later"))
                } else {
                    (
                        latency,
                        format!("no answer within {timeout_ms}ms (latency {latency}ms): times out"),
                    )
                };
                let endpoint = endpoint.unwrap_or(Endpoint::Model);
                // The late answer is the backend's own (a timeout fault reshapes nothing), or the
                // reshaped answer of another fault that came too slowly.
                let shape = fault.as_ref().filter(|f| !matches!(f, FaultKind::Timeout));
                let seen = oracle::classify(endpoint, shape, answer.as_ref());
                late = Some((
                    now.plus_ms(late_at),
                    Scheduled::Deliver { generation, id, endpoint, response, number, seen },
                ));
                (
                    now.plus_ms(timeout_ms),
                    Scheduled::Fail { generation, id, failure: RequestFailure::Timeout, number },
                    text,
                )
            }
            (Ok(response), _) => {
                let at = now.plus_ms(latency);
                let text = format!(
                    "{} after {latency}ms{}",
                    response.status,
                    report::response_summary(endpoint, &response)
                );
                let endpoint = endpoint.unwrap_or(Endpoint::Model);
                let seen = oracle::classify(endpoint, fault.as_ref(), answer.as_ref());
                (at, Scheduled::Deliver { generation, id, endpoint, response, number, seen }, text)
            }
        };
        Ok(Plan { first: (at, scheduled), late, outcome, answered })
    }

    /// The request log's line for a call: number, time, request, purpose, fault and outcome.
    /// The structured record of a request (`--format json`), beside its request-log line.
    pub(super) fn request_record(
        at_ms: u64,
        call: &Call,
        request: &HttpRequest,
        what: &Option<InFlight>,
        plan: &Plan,
        line: String,
    ) -> report::RequestRecord {
        report::RequestRecord {
            number: call.number,
            at_ms,
            thread: purpose_thread(what),
            endpoint: call.endpoint,
            method: request.method.as_str().to_owned(),
            path: request.path().to_owned(),
            purpose: purpose_text(what),
            fault: call.fault.as_ref().map(|f| f.name().to_owned()),
            outcome: plan.outcome.clone(),
            request: report::request_summary(request),
            status: plan.answered.as_ref().map(|(status, _)| *status),
            delivered: plan.on_time().map(|response| response.status),
            answer: plan.answered.as_ref().map(|(_, summary)| summary.clone()).unwrap_or_default(),
            line,
        }
    }

    pub(super) fn request_line(
        clock: &str,
        call: &Call,
        request: &HttpRequest,
        what: &Option<InFlight>,
        plan: &Plan,
    ) -> String {
        let fault_text =
            call.fault.as_ref().map(|f| format!(" [fault {}]", f.name())).unwrap_or_default();
        format!(
            "#{} {clock} {} {}{} ({}){fault_text} -> {}",
            call.number,
            request.method.as_str(),
            request.path(),
            report::request_summary(request),
            purpose_text(what),
            plan.outcome,
        )
    }

    /// Queues what the plan says arrives, each with its seeded tie-break.
    pub(super) fn schedule(&mut self, plan: Plan) {
        for (at, scheduled) in std::iter::once(plan.first).chain(plan.late) {
            let tie = self.order_rng.next_u64();
            self.next_seq += 1;
            self.queue.insert((at, tie, self.next_seq), scheduled);
        }
    }

    /// The next event and its time, unless the queue is empty or the next is later than `limit`.
    pub(super) fn pop(&mut self, limit: Option<Timestamp>) -> Option<(Timestamp, Scheduled)> {
        let (&(at, ..), _) = self.queue.first_key_value()?;
        if limit.is_some_and(|l| at > l) {
            return None;
        }
        self.queue.pop_first().map(|((at, ..), event)| (at, event))
    }

    /// Whether nothing is in flight.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// A crash: everything in flight dies with the process.
    pub(super) fn drop_in_flight(&mut self) {
        self.queue.clear();
    }

    /// `heal`: no more faults for the rest of the run.
    pub(super) fn heal(&mut self) {
        self.faults.heal();
    }
}

/// The thread a request works for, or `-` for process-wide ones.
pub(crate) fn purpose_thread(what: &Option<InFlight>) -> String {
    match what {
        Some(
            InFlight::TaskBiscuit { thread, .. }
            | InFlight::TaskRegister { thread, .. }
            | InFlight::Model(thread, _),
        ) => thread.0.clone(),
        _ => "-".into(),
    }
}

/// The endpoint a request of this purpose goes to.
pub(crate) fn endpoint_of(what: &Option<InFlight>) -> Option<Endpoint> {
    Some(match what.as_ref()? {
        InFlight::IdentityBiscuit | InFlight::TaskBiscuit { .. } => Endpoint::Biscuit,
        InFlight::IdentityRegister => Endpoint::IdentityRegister,
        InFlight::TaskRegister { .. } => Endpoint::TaskRegister,
        InFlight::Model(..) => Endpoint::Model,
    })
}

/// What a request is for, in words.
pub(crate) fn purpose_text(what: &Option<InFlight>) -> String {
    match what {
        Some(InFlight::IdentityBiscuit) => "identity biscuit".into(),
        Some(InFlight::IdentityRegister) => "identity registration".into(),
        Some(InFlight::TaskBiscuit { thread, .. }) => format!("task biscuit for {thread}"),
        Some(InFlight::TaskRegister { thread, .. }) => format!("task registration for {thread}"),
        Some(InFlight::Model(thread, turn)) => format!("model request for {thread} {turn}"),
        None => "unknown request".into(),
    }
}
