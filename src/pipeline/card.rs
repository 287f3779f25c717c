//! The card state machine.
