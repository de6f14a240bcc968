//! The machine the lifecycle runs on: the running process (none after a crash) and its
//! generation, the rollout store that outlives every process, the crash points armed for the
//! running process, and the turn numbers, which go on across processes.

use agentsim_core::{InFlight, Lifecycle, RequestId, TurnId};

use super::world::World;
use crate::fault::Endpoint;
use crate::seed;
use crate::store::RolloutStore;

pub(super) struct Process {
    pub(super) machine: Lifecycle,
    pub(super) generation: u32,
}

pub(super) struct Host {
    pub(super) process: Option<Process>,
    /// The generation of the last process started; a new one counts on from it.
    pub(super) generation: u32,
    pub(super) store: Box<dyn RolloutStore>,
    /// `crash on_append <thread>`: dies halfway through that thread's next append.
    pub(super) crash_on_append: Option<String>,
    /// `crash on_response <endpoint>`: dies as that endpoint's next success arrives.
    pub(super) crash_on_response: Option<Endpoint>,
    next_turn: u32,
}

impl Host {
    pub(super) fn new(store: Box<dyn RolloutStore>) -> Host {
        Host {
            process: None,
            generation: 0,
            store,
            crash_on_append: None,
            crash_on_response: None,
            next_turn: 1,
        }
    }

    /// A new process starts from the world as it is, its core seeded by its generation.
    pub(super) fn start(&mut self, seed: u64, world: &World) {
        self.generation += 1;
        let core_seed = seed::bytes32(seed, &format!("core/{}", self.generation));
        let machine = Lifecycle::new(
            world.config.clone(),
            world.auth.clone(),
            world.auth_store.clone(),
            core_seed,
        );
        self.process = Some(Process { machine, generation: self.generation });
    }

    /// The process dies, and the crash points armed for it with it.
    pub(super) fn kill(&mut self) {
        self.process = None;
        self.crash_on_append = None;
        self.crash_on_response = None;
    }

    /// The number of the next turn submitted, in any process.
    pub(super) fn next_turn(&mut self) -> TurnId {
        let turn = TurnId(self.next_turn);
        self.next_turn += 1;
        turn
    }

    /// Whether `generation` is the running process (an answer to a dead one is dropped).
    pub(super) fn is_current(&self, generation: u32) -> bool {
        self.process.as_ref().is_some_and(|p| p.generation == generation)
    }

    pub(super) fn live_machine(&self) -> Result<&Lifecycle, String> {
        self.process.as_ref().map(|p| &p.machine).ok_or_else(|| {
            "no process is running (the last one crashed): add a `restart` step".to_owned()
        })
    }

    pub(super) fn machine_mut(&mut self) -> &mut Lifecycle {
        &mut self.process.as_mut().expect("a live process").machine
    }

    /// What the running process's request `id` is for, if it is still waiting for it.
    pub(super) fn in_flight_of(&self, id: RequestId) -> Option<InFlight> {
        let p = self.process.as_ref()?;
        p.machine.in_flight_request(id)
    }

    pub(super) fn read_rollout(&self, thread: &str) -> Result<Option<Vec<u8>>, String> {
        self.store.read(thread).map_err(|e| format!("cannot read {thread}'s rollout: {e}"))
    }

    pub(super) fn write_rollout(&mut self, thread: &str, bytes: &[u8]) -> Result<(), String> {
        self.store
            .append(thread, bytes)
            .map_err(|e| format!("cannot write {thread}'s rollout: {e}"))
    }
}
