//! Identifier rules shared by every entity (SPEC §0.3).

/// The message for a key that does not match `^[a-zA-Z0-9_-]+$`.
pub const KEY_RULE: &str = "Key must only contain alphanumeric characters, hyphens and underscores";

/// Maximum length of keys and caller-supplied user ids.
pub const MAX_ID_LEN: usize = 255;

/// Keys of metrics, attributes, points systems, levels, leaderboards and api achievements.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_ID_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// User ids are the caller's strings, case-sensitive, 1–255 characters (SPEC §0.3 DECISION).
pub fn is_valid_user_id(id: &str) -> bool {
    let n = id.chars().count();
    (1..=MAX_ID_LEN).contains(&n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_pattern() {
        assert!(is_valid_key("lessons_completed-2"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("with space"));
        assert!(!is_valid_key("dot.key"));
        assert!(!is_valid_key(&"a".repeat(256)));
    }

    #[test]
    fn user_id_length_counts_characters() {
        assert!(is_valid_user_id("é"));
        assert!(is_valid_user_id(&"é".repeat(255)));
        assert!(!is_valid_user_id(&"é".repeat(256)));
        assert!(!is_valid_user_id(""));
    }

    proptest! {
        #[test]
        fn valid_keys_are_exactly_the_pattern(s in "\\PC{0,20}") {
            let expected = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            prop_assert_eq!(is_valid_key(&s), expected);
        }
    }
}
