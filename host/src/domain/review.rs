//! A payment's review note (需要人工核对): the reasons it is held for a person to check, one per
//! line. A new reason is added to those already there, never written over them: the first is
//! often the one that needs money moved (paid after it was closed here), and a later refund
//! mismatch must not hide it. Clearing the note clears them all (the owner read them together).

/// The most reasons a note keeps: beyond that the oldest after the first are dropped (a
/// provider that repeats a mismatch with a new amount each time cannot grow the row for ever).
pub const MAX_REASONS: usize = 8;

/// The note after `reason` is added to `note`: unchanged when it already holds that reason.
pub fn with_reason(note: Option<&str>, reason: &str) -> String {
    let reason = reason.trim();
    let mut kept: Vec<&str> = reasons(note.unwrap_or("")).collect();
    if reason.is_empty() || kept.contains(&reason) {
        return kept.join("\n");
    }
    kept.push(reason);
    while kept.len() > MAX_REASONS {
        kept.remove(1);
    }
    kept.join("\n")
}

/// The reasons of a note, oldest first.
pub fn reasons(note: &str) -> impl Iterator<Item = &str> {
    note.lines().map(str::trim).filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_reason_is_added_after_the_ones_already_there() {
        let first = with_reason(None, "paid after it was closed here");
        assert_eq!(first, "paid after it was closed here");
        let both = with_reason(Some(&first), "refund 2 was reported succeeded, now failed");
        assert_eq!(
            both,
            "paid after it was closed here\nrefund 2 was reported succeeded, now failed"
        );
        assert_eq!(
            reasons(&both).collect::<Vec<_>>(),
            [
                "paid after it was closed here",
                "refund 2 was reported succeeded, now failed"
            ]
        );
    }

    #[test]
    fn a_reason_given_again_is_kept_once() {
        let note = with_reason(Some("a\nb"), "a");
        assert_eq!(note, "a\nb");
        assert_eq!(with_reason(Some(""), "  c "), "c");
        assert_eq!(with_reason(Some("a"), " "), "a");
    }

    #[test]
    fn the_first_reason_stays_when_the_note_is_full() {
        let mut note = String::new();
        for i in 0..20 {
            note = with_reason(Some(&note), &format!("reason {i}"));
        }
        let kept: Vec<_> = reasons(&note).collect();
        assert_eq!(kept.len(), MAX_REASONS);
        assert_eq!(kept[0], "reason 0");
        assert_eq!(kept[MAX_REASONS - 1], "reason 19");
        assert_eq!(kept[1], "reason 13");
    }
}
