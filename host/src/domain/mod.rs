//! Pure domain logic, without I/O.

pub mod amount;
pub mod clock;
pub mod device;
pub mod events;
pub mod html;
pub mod refunds;
pub mod review;
pub mod secret;
pub mod state;
pub mod zone;

pub use secret::Secret;
