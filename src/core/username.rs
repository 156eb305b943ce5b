//! The one rule for usernames, applied wherever one enters imrelay (the
//! backend API's path, a client's JWT): Rocket.Chat matches usernames
//! without regard to case, so imrelay keeps them in lower case. Otherwise
//! `Dave` and `dave` would be one Rocket.Chat account but two cache
//! entries and two derived passwords, and each failed login would count
//! toward Rocket.Chat's lockout.

/// Why a username is not served.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Outside the rule.
    #[error("{0:?} is not a valid username: 1 to 120 letters, digits, '-', '_' or '.', starting with a letter, digit or '_'")]
    Invalid(String),
    /// The admin or a bot account.
    #[error("{0} is imrelay's admin or a bot account in Rocket.Chat, never an end user (rocketchat.admin_username, users.reserved)")]
    Reserved(String),
}

/// Longest username accepted (Rocket.Chat has no lower bound of its own).
const MAX_LEN: usize = 120;

/// `raw` in its canonical form (lower case), if it is a username imrelay
/// serves: Rocket.Chat's default characters (`[0-9a-zA-Z-_.]`), starting
/// with a letter, digit or `_` (so `.`, `..` and `-`, which HTTP clients
/// and shells treat specially, are refused), and not one of the `reserved`
/// accounts (lower case: the admin, `rocket.cat`, bots).
pub fn canonical(raw: &str, reserved: &[String]) -> Result<String, UsernameError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && raw
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(UsernameError::Invalid(raw.to_string()));
    }
    let name = raw.to_ascii_lowercase();
    if reserved.contains(&name) {
        return Err(UsernameError::Reserved(name));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reserved() -> Vec<String> {
        vec!["admin".into(), "rocket.cat".into()]
    }

    #[test]
    fn case_folds_and_odd_names_are_refused() {
        assert_eq!(canonical("Dave", &reserved()).unwrap(), "dave");
        assert_eq!(canonical("j.doe-2_x", &reserved()).unwrap(), "j.doe-2_x");
        assert_eq!(canonical("_svc", &reserved()).unwrap(), "_svc");
        for bad in [
            "", ".", "..", "-", ".x", "-x", "a b", "a/b", "a%2fb", "é", "a\0",
        ] {
            let e = canonical(bad, &reserved()).unwrap_err();
            assert_eq!(e, UsernameError::Invalid(bad.to_string()), "{bad:?}");
        }
        assert!(canonical(&"a".repeat(121), &reserved()).is_err());
        for r in ["admin", "ADMIN", "Rocket.Cat"] {
            let e = canonical(r, &reserved()).unwrap_err();
            assert_eq!(e, UsernameError::Reserved(r.to_ascii_lowercase()), "{r}");
        }
    }

    proptest! {
        /// Whatever arrives, the answer is an error or a lower-case name
        /// that is its own canonical form (one account, one spelling).
        #[test]
        fn canonical_is_lower_case_and_stable(
            raw in prop_oneof!["\\PC{0,130}", "[A-Za-z0-9._-]{1,130}", "(ADMIN|Admin|admin|rocket\\.cat|ROCKET\\.CAT)"],
        ) {
            if let Ok(name) = canonical(&raw, &reserved()) {
                prop_assert!(!reserved().contains(&name));
                prop_assert_eq!(name.to_ascii_lowercase(), name.clone());
                prop_assert_eq!(canonical(&name, &reserved()).unwrap(), name.clone());
                prop_assert!(raw.eq_ignore_ascii_case(&name));
            }
        }
    }
}
