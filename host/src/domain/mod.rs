//! Pure domain logic, without I/O.

pub mod state;
