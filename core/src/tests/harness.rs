//! The test harness of the core's unit tests: a [`Lifecycle`], a tiny fake backend that answers the
//! way the real one does, and a record of every command the machine returned.
//!
//! Requests are queued, never answered on their own: a test decides which one is answered, when,
//! and with what, so it controls every order and race. After every input the harness drains
//! [`Lifecycle::poll_command`] and checks the invariants of spec section 5 that one step can
//! break (secrets, assertions, appended values, single flight).
//!
//! Tests talk to the machine only through [`Harness`] and the `assert_*` helpers of
//! `harness/assert.rs`: one helper per boundary, so an API change touches the harness, not every
//! test. `harness/fixtures.rs` holds the inputs (auth, identities, responses, rollout lines),
//! `harness/backend.rs` the fake backend and `harness/driver.rs` the [`Harness`] itself.

mod assert;
mod backend;
mod driver;
mod fixtures;

pub(super) use self::assert::*;
pub(super) use self::driver::*;
pub(super) use self::fixtures::*;
