//! A secret held in memory (an API token, a password hash, a database URL with its password, a
//! shop secret): its `Debug` and `Display` never show it, so a config or a struct that derives
//! `Debug` can be logged or printed in a panic without leaking. The value is read only through
//! [`Secret::expose`], which makes every use easy to find. The memory is wiped when dropped.
//!
//! A newtype rather than the `secrecy` crate: payhost needs the value to be `Clone`, comparable
//! and (for merchant rows) serialisable as the plain string older rows hold; `secrecy` keeps all
//! three behind extra traits and wrappers, and adds nothing this does not.

use zeroize::Zeroize;

#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself: only to compare, sign, connect or hand it to whom it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(***)"
        })
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(***))");
        assert_eq!(s.expose(), "hunter2-very-secret");
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            "\"hunter2-very-secret\"",
            "stored as the plain string older rows hold"
        );
    }
}
