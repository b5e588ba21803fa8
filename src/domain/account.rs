//! What a client says about itself when it signs in: its username and the
//! device it runs on. Parsed once at the edge; a value of these types is
//! valid.

use std::fmt;

/// 3 to 30 of a-z 0-9 _ . -, starting with a letter or digit;
/// case-insensitive (kept lower-cased) so `Alice` and `alice` are one name.
#[derive(Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const RULE: &'static str =
        "username must be 3 to 30 characters of a-z, 0-9, _ . -, starting with a letter or digit";

    pub fn parse(input: &str) -> Result<Username, &'static str> {
        let name = input.trim().to_ascii_lowercase();
        let ok = (3..=30).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(Username(name))
        } else {
            Err(Username::RULE)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

/// The device a login comes from, as the reference's verify body names it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Device {
    pub install_id: Option<String>,
    pub platform: Option<String>,
    pub app_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_cased_and_checked() {
        assert_eq!(Username::parse("  Alice_1 ").unwrap().as_str(), "alice_1");
        for bad in ["ab", "_alice", "a".repeat(31).as_str(), "al ice", "álice", ""] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Username::parse("a.b-c").unwrap().as_str(), "a.b-c");
    }
}
