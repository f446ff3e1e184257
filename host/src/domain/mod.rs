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

/// An order number as an error message quotes it: at most 64 characters (the longest a payment
/// may have), so a 20,000-character path is not sent back whole.
pub fn quoted_order(no: &str) -> String {
    const MAX: usize = 64;
    if no.chars().count() <= MAX {
        format!("{no:?}")
    } else {
        let cut: String = no.chars().take(MAX).collect();
        format!("{cut:?}… ({} characters)", no.chars().count())
    }
}

#[cfg(test)]
mod quoted_order_tests {
    #[test]
    fn a_long_order_number_is_cut_when_quoted() {
        assert_eq!(super::quoted_order("A1"), "\"A1\"");
        let long = "a".repeat(20_000);
        let q = super::quoted_order(&long);
        assert!(q.len() < 100 && q.ends_with("(20000 characters)"), "{q}");
    }
}
