//! Pure domain logic, without I/O.

pub mod amount;
pub mod device;
pub mod events;
pub mod state;
