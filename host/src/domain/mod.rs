//! Pure domain logic, without I/O.

pub mod amount;
pub mod device;
pub mod events;
pub mod html;
pub mod secret;
pub mod state;

pub use secret::Secret;
