//! Pure domain logic, without I/O.

pub mod device;
pub mod state;
