//! The proptest strategies: a swarm configuration per case and a list of abstract ops.
//!
//! Every choice lists its simplest alternative first, because proptest shrinks a `prop_oneof!`
//! towards its first arm: a shrunk failure drifts towards the default policies, no TTL, no
//! faults, and plain turns.

use std::collections::BTreeMap;

use agentsim_core::ExpiryPolicy;
use proptest::prelude::*;
use proptest::sample::subsequence;

use crate::damage::DamageKind;
use crate::fault::{Endpoint, FaultKind, RandomFaults};
use crate::scenario::{ConfigChange, InitialIdentity, Moment};

/// The most abstract ops one case has before its liveness phase.
pub const MAX_OPS: usize = 44;

/// Identity TTLs the swarm draws from, in milliseconds. The shortest is still longer than the
/// liveness phase can take (a few turns at the slowest latency), so the phase never straddles an
/// expiry it did not cause.
pub const SHORT_TTLS_MS: [u64; 3] = [120_000, 180_000, 600_000];
/// Long TTLs: one hour and one day.
pub const LONG_TTLS_MS: [u64; 2] = [3_600_000, 86_400_000];
/// TTLs of the swarms dense in boundary timing: shorter than, equal to and longer than the
/// whole-second latencies they come with ([`EDGE_LATENCIES_MS`]). No identity stays usable for
/// long, so those cases make no liveness prediction.
pub const EDGE_TTLS_MS: [u64; 3] = [500, 1_000, 2_000];
/// Fixed whole-second latencies of the swarms dense in boundary timing.
pub const EDGE_LATENCIES_MS: [(u64, u64); 2] = [(1_000, 1_000), (2_000, 2_000)];

/// The run's configuration, drawn per case (swarm testing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swarm {
    /// How many thread names the case may use (1 to 4); forks use them too.
    pub threads: u8,
    /// The expiry policy.
    pub expiry: ExpiryPolicy,
    /// `persist_task`.
    pub persist_task: bool,
    /// The `use_agent_identity` flag.
    pub use_agent_identity: bool,
    /// The backend's identity TTL.
    pub identity_ttl_ms: Option<u64>,
    /// What the auth store holds at the start.
    pub identity: InitialIdentity,
    /// The auth at the start.
    pub auth: AuthChoice,
    /// The backend's latency range.
    pub latency_ms: (u64, u64),
    /// Random faults per endpoint (empty: a calm run).
    pub faults: RandomFaults,
    /// Whether the world changes around the process: identity rotation, expiry and revocation,
    /// auth changes and armed crash points (off: those ops are skipped, and the run may be quiet
    /// enough for the strict predictions).
    pub world_events: bool,
    /// Which family of edge ops the case is dense in.
    pub edges: Edges,
}

/// The edge families a swarm can be dense in (the op weights follow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Edges {
    /// The plain op mix.
    Plain,
    /// Boundary timing: `advance to_expiry` -1/0/+1 ms, TTLs around whole-second latencies.
    Time,
    /// Rollouts: damage, resumes from copies, forks of forks, forks during a failing prewarm.
    Rollouts,
    /// World changes armed at a request (`on <endpoint> <moment> ...`).
    Identity,
    /// A bit of every family.
    Mixed,
}

/// The world change an `on` op arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorldChoice {
    /// `rotate_identity`.
    Rotate,
    /// `expire_identity`.
    Expire,
    /// `revoke_identity`.
    Revoke,
    /// `auth ...`: sign-out, workspace switch, API key, back home.
    Auth(AuthChoice),
}

/// The auths a case moves between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthChoice {
    /// `chatgpt account=acct-1 user=user-1`: the default workspace.
    Home,
    /// `chatgpt account=acct-2`: another workspace.
    Other,
    /// `api_key`.
    ApiKey,
    /// `none`: signed out.
    SignedOut,
}

/// How far an `advance` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvanceBy {
    /// Less than a typical response.
    Short(u64),
    /// Seconds: past latencies and request timeouts (15 s).
    Medium(u64),
    /// Past the identity TTL (one hour when there is none).
    PastTtl,
}

/// One abstract op. Thread operands are indices into the threads the op can apply to when it
/// comes (taken modulo their number), so an op stays meaningful when shrinking removes others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A turn that the step waits for, on a live thread.
    Turn(u8),
    /// Start the thread with this name index if it is new, resume it if it has a rollout and is
    /// not running.
    Open(u8),
    /// Run until nothing is in flight.
    Settle,
    /// A turn that the step does not wait for.
    Submit(u8),
    /// Virtual time passes.
    Advance(AdvanceBy),
    /// Fork a new thread from a thread with a rollout.
    Fork(u8),
    /// Restart the process (killing the running one, if any).
    Restart,
    /// Restart the process with a policy change (a flag rollout, persist or expiry switched).
    Reconfigure(ConfigChange),
    /// Another process rotates the identity.
    RotateIdentity,
    /// The auth changes.
    Auth(AuthChoice),
    /// The backend expires the stored identity.
    ExpireIdentity,
    /// The backend revokes the stored identity.
    RevokeIdentity,
    /// The process dies now.
    Crash,
    /// The next append of a live thread is torn and kills the process.
    CrashOnAppend(u8),
    /// The next successful answer of an endpoint is lost and kills the process.
    CrashOnResponse(Endpoint),
    /// Faults stop.
    Heal,
    /// `advance to_expiry` with an offset of -1, 0 or +1 ms.
    AdvanceToExpiry(i8),
    /// Resume the thread with this (new) name index from a copy of another thread's rollout.
    ResumeFromThread(u8, u8),
    /// Damage the rollout of a thread that is not running.
    Damage(u8, DamageKind),
    /// Open a thread (start or resume), submit a turn if it has no rollout yet, and fork it at
    /// once: a fork during its prewarm.
    ForkDuringPrewarm(u8),
    /// A turn, then a restart while signed in elsewhere (or signed out), a resume there, and a
    /// sign-in back home: the task resume dropped is current again (rule 13 **\[ours\]**).
    ResumeAway(u8, AuthChoice),
    /// Arm a world change at the next request to an endpoint.
    On(Endpoint, Moment, WorldChoice),
    /// Compact a live thread's history.
    Compact(u8),
    /// Roll back a live thread's last 1 to 3 turns.
    Rollback(u8, u8),
}

/// A whole case, its run seed included (not shrunk: another seed is another run), for
/// `proptest!` tests.
pub fn case_strategy() -> BoxedStrategy<super::FuzzCase> {
    (any::<u64>().no_shrink(), body_strategy())
        .prop_map(|(seed, (swarm, ops))| super::FuzzCase {
            seed,
            swarm,
            ops,
            extra_expects: Vec::new(),
        })
        .boxed()
}

/// A case body: its swarm configuration and its ops.
pub fn body_strategy() -> BoxedStrategy<(Swarm, Vec<Op>)> {
    swarm_strategy()
        .prop_flat_map(|swarm| {
            let ops = proptest::collection::vec(op_strategy(swarm.edges), 0..=MAX_OPS);
            (Just(swarm), ops)
        })
        .boxed()
}

/// The swarm configuration of one case.
pub fn swarm_strategy() -> impl Strategy<Value = Swarm> {
    let policies = (
        1u8..=4,
        prop_oneof![3 => Just(ExpiryPolicy::Reacquire), 1 => Just(ExpiryPolicy::AsShipped)],
        prop_oneof![4 => Just(true), 1 => Just(false)],
        prop_oneof![9 => Just(true), 1 => Just(false)],
    );
    let world = (
        prop_oneof![
            6 => Just(None),
            3 => proptest::sample::select(SHORT_TTLS_MS.to_vec()).prop_map(Some),
            2 => proptest::sample::select(LONG_TTLS_MS.to_vec()).prop_map(Some),
        ],
        prop_oneof![7 => Just(InitialIdentity::None), 3 => Just(InitialIdentity::Warm)],
        prop_oneof![17 => Just(AuthChoice::Home), 2 => Just(AuthChoice::SignedOut), 1 => Just(AuthChoice::ApiKey)],
        prop_oneof![
            4 => Just((5, 250)),
            2 => Just((1, 10)),
            2 => Just((0, 1_000)),
            1 => Just((200, 2_000)),
        ],
        faults_strategy(),
        prop_oneof![7 => Just(true), 4 => Just(false)],
    );
    let edges = (
        prop_oneof![
            12 => Just(Edges::Plain),
            2 => Just(Edges::Time),
            2 => Just(Edges::Rollouts),
            2 => Just(Edges::Identity),
            1 => Just(Edges::Mixed),
        ],
        prop_oneof![
            3 => proptest::sample::select(EDGE_TTLS_MS.to_vec()),
            1 => proptest::sample::select(SHORT_TTLS_MS.to_vec()),
        ],
        prop_oneof![
            3 => proptest::sample::select(EDGE_LATENCIES_MS.to_vec()),
            1 => Just((5, 250)),
        ],
        prop_oneof![2 => Just(false), 1 => Just(true)],
    );
    (policies, world, edges).prop_map(
        |(
            (threads, expiry, persist_task, use_agent_identity),
            (identity_ttl_ms, identity, auth, latency_ms, faults, world_events),
            (edges, edge_ttl, edge_latency, prewarm_storm),
        )| {
            let mut swarm = Swarm {
                threads,
                expiry,
                persist_task,
                use_agent_identity,
                identity_ttl_ms,
                identity,
                auth,
                latency_ms,
                faults,
                world_events,
                edges,
            };
            match edges {
                Edges::Plain => {}
                Edges::Time => {
                    swarm.identity_ttl_ms = Some(edge_ttl);
                    swarm.latency_ms = edge_latency;
                }
                Edges::Rollouts => {
                    // Forks of forks and resumes of copies need names to spare.
                    swarm.threads = swarm.threads.max(3);
                    if prewarm_storm {
                        // Every prewarm fails: a fork during it copies a thread mid-failure.
                        swarm.faults = RandomFaults {
                            rate_per_mille: BTreeMap::from([(Endpoint::TaskRegister, 1000)]),
                            kinds: vec![
                                FaultKind::Status { status: 503, body: None },
                                FaultKind::Timeout,
                            ],
                        };
                    }
                }
                Edges::Identity | Edges::Mixed => swarm.world_events = true,
            }
            swarm
        },
    )
}

/// Random faults: none for a calm run, else a rate per endpoint (from rare to every call) and a
/// handful of kinds.
pub fn faults_strategy() -> impl Strategy<Value = RandomFaults> {
    let rate = || prop_oneof![3 => Just(0u16), 2 => Just(20), 2 => Just(100), 2 => Just(300), 1 => Just(1000)];
    let stormy = ([rate(), rate(), rate(), rate()], subsequence(fault_kinds(), 1..=5)).prop_map(
        |(rates, kinds)| {
            let rate_per_mille: BTreeMap<Endpoint, u16> =
                Endpoint::ALL.into_iter().zip(rates).filter(|(_, rate)| *rate > 0).collect();
            if rate_per_mille.is_empty() {
                RandomFaults::default()
            } else {
                RandomFaults { rate_per_mille, kinds }
            }
        },
    );
    prop_oneof![2 => Just(RandomFaults::default()), 3 => stormy]
}

/// The fault kinds a storm draws from: every [`FaultKind`], with the statuses a client meets.
pub fn fault_kinds() -> Vec<FaultKind> {
    let status = |status: u16, body: Option<&str>| FaultKind::Status {
        status,
        body: body.map(str::to_owned),
    };
    vec![
        status(503, None),
        FaultKind::Timeout,
        FaultKind::Reset,
        status(500, None),
        status(429, None),
        status(401, Some(r#"{"error":"identity_expired"}"#)),
        status(401, Some(r#"{"error":"invalid_assertion"}"#)),
        FaultKind::MalformedJson,
        FaultKind::MissingField,
        FaultKind::WrongJsonTypes,
        FaultKind::EmptyBody,
        FaultKind::WrongContentType,
        FaultKind::HugeBody,
        FaultKind::BadBase64,
        FaultKind::WrongKeyBox,
        FaultKind::NonUtf8Plaintext,
        FaultKind::MissingBiscuitHeader,
        FaultKind::NonUtf8BiscuitHeader,
    ]
}

/// One abstract op, weighted towards turns and thread lifecycle, and towards the swarm's edge
/// family (a `Plain` swarm never draws an edge op).
pub fn op_strategy(edges: Edges) -> BoxedStrategy<Op> {
    // Extra weight per family: (time, rollouts, identity).
    let (time, rollouts, identity) = match edges {
        Edges::Plain => (0, 0, 0),
        Edges::Time => (3, 0, 0),
        Edges::Rollouts => (0, 3, 0),
        Edges::Identity => (0, 0, 3),
        Edges::Mixed => (1, 1, 1),
    };
    let edgy = u32::from(edges != Edges::Plain);
    let arms: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (20, any::<u8>().prop_map(Op::Turn).boxed()),
        (14, any::<u8>().prop_map(Op::Open).boxed()),
        (8, Just(Op::Settle).boxed()),
        (7, any::<u8>().prop_map(Op::Submit).boxed()),
        (7, advance_strategy().prop_map(Op::Advance).boxed()),
        (4 + 2 * rollouts, any::<u8>().prop_map(Op::Fork).boxed()),
        (4 + rollouts, Just(Op::Restart).boxed()),
        (2 + 2 * edgy, reconfigure_strategy().prop_map(Op::Reconfigure).boxed()),
        (3, Just(Op::RotateIdentity).boxed()),
        (4, auth_strategy().prop_map(Op::Auth).boxed()),
        (2, Just(Op::ExpireIdentity).boxed()),
        (2, Just(Op::RevokeIdentity).boxed()),
        (2, Just(Op::Crash).boxed()),
        (2, any::<u8>().prop_map(Op::CrashOnAppend).boxed()),
        (1, proptest::sample::select(Endpoint::ALL.to_vec()).prop_map(Op::CrashOnResponse).boxed()),
        (1, Just(Op::Heal).boxed()),
        (4 * time, (-1i8..=1).prop_map(Op::AdvanceToExpiry).boxed()),
        (3 * time, (1u64..=2_000).prop_map(|ms| Op::Advance(AdvanceBy::Short(ms))).boxed()),
        (
            2 * rollouts,
            (any::<u8>(), any::<u8>()).prop_map(|(t, s)| Op::ResumeFromThread(t, s)).boxed(),
        ),
        (
            3 * rollouts,
            (any::<u8>(), proptest::sample::select(DamageKind::ALL.to_vec()))
                .prop_map(|(t, kind)| Op::Damage(t, kind))
                .boxed(),
        ),
        (2 * rollouts, any::<u8>().prop_map(Op::ForkDuringPrewarm).boxed()),
        (1 + rollouts, any::<u8>().prop_map(Op::Compact).boxed()),
        (1 + rollouts, (any::<u8>(), 1u8..=3).prop_map(|(t, n)| Op::Rollback(t, n)).boxed()),
        (
            2 * (rollouts + identity),
            (any::<u8>(), away_strategy()).prop_map(|(i, away)| Op::ResumeAway(i, away)).boxed(),
        ),
        (
            5 * identity,
            (
                proptest::sample::select(Endpoint::ALL.to_vec()),
                proptest::sample::select(Moment::ALL.to_vec()),
                world_choice_strategy(),
            )
                .prop_map(|(endpoint, moment, world)| Op::On(endpoint, moment, world))
                .boxed(),
        ),
    ];
    let arms: Vec<(u32, BoxedStrategy<Op>)> = arms.into_iter().filter(|(w, _)| *w > 0).collect();
    proptest::strategy::Union::new_weighted(arms).boxed()
}

fn away_strategy() -> impl Strategy<Value = AuthChoice> {
    prop_oneof![Just(AuthChoice::SignedOut), Just(AuthChoice::Other), Just(AuthChoice::ApiKey)]
}

fn world_choice_strategy() -> impl Strategy<Value = WorldChoice> {
    prop_oneof![
        Just(WorldChoice::Rotate),
        Just(WorldChoice::Expire),
        Just(WorldChoice::Revoke),
        auth_strategy().prop_map(WorldChoice::Auth),
    ]
}

/// A policy change that changes something (each field may stay as it is, not all of them).
fn reconfigure_strategy() -> impl Strategy<Value = ConfigChange> {
    let expiry = prop_oneof![Just(ExpiryPolicy::Reacquire), Just(ExpiryPolicy::AsShipped)];
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(expiry),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(use_agent_identity, expiry, persist_task)| ConfigChange {
            use_agent_identity,
            expiry,
            persist_task,
        })
        .prop_filter("a change changes something", |c| *c != ConfigChange::default())
}

fn advance_strategy() -> impl Strategy<Value = AdvanceBy> {
    prop_oneof![
        3 => (1u64..1_000).prop_map(AdvanceBy::Short),
        3 => (1_000u64..=20_000).prop_map(AdvanceBy::Medium),
        2 => Just(AdvanceBy::PastTtl),
    ]
}

fn auth_strategy() -> impl Strategy<Value = AuthChoice> {
    prop_oneof![
        Just(AuthChoice::Home),
        Just(AuthChoice::Other),
        Just(AuthChoice::ApiKey),
        Just(AuthChoice::SignedOut),
    ]
}
