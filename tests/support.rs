//! Shared helpers for the gate.
