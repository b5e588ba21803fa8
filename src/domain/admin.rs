//! The admin API's service tokens (`ADMIN_API_TOKENS`) and their scopes.
//!
//! The secret holds entries, not tokens: `<token_id>:<scope>[ <scope>...]:<sha256>`,
//! separated by commas or newlines, where `<sha256>` is the 64 hex digits of
//! SHA-256 over the token (`scripts/admin-token.sh` mints a token and prints
//! its entry). A token is `oea_` and 32 CSPRNG bytes in base64url: 256 bits,
//! which no one can guess or search, so an unsalted SHA-256 is the right
//! store for it, as ASVS 5 V6.5.2 (and NIST SP 800-63B 5.1.2.2) allow "a
//! standard hash function" for look-up secrets of 112 bits or more; we apply
//! that rule by analogy, since neither names service tokens, and with ASVS 5
//! V11.5.1 (128 bits or more from a CSPRNG). A salt or a slow hash would add
//! nothing against 2^256 and cost CPU on every admin request. Whoever reads
//! the secret (or a log of the configuration) learns no token. The `oea_`
//! prefix lets secret scanners recognise a leaked token.
//!
//! A presented token is hashed and compared with every entry in constant
//! time, with no early exit (`find`), so timing does not tell which entry
//! matched or how much of a hash did (ASVS 5 V11.2.4: no "short-circuit"
//! in comparisons, calculations or returns).

use subtle::{Choice, ConditionallySelectable};

use super::crypto::{ct_eq, hex, sha256};

/// What a token may do. Small on purpose: read accounts, change their
/// status, end their sessions, read their audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Look up a user by id, email or phone (unmasked).
    UsersRead,
    /// Disable and enable a user.
    UsersWrite,
    /// Revoke all of a user's sessions.
    SessionsWrite,
    /// List a user's audit events.
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::UsersRead, Scope::UsersWrite, Scope::SessionsWrite, Scope::AuditRead];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::SessionsWrite => "sessions:write",
            Scope::AuditRead => "audit:read",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// The `WWW-Authenticate` challenge of a 403 for want of this scope
    /// (RFC 6750 3 and 3.1: `insufficient_scope`, with the scope needed).
    pub fn challenge(self) -> &'static str {
        match self {
            Scope::UsersRead => "Bearer error=\"insufficient_scope\", scope=\"users:read\"",
            Scope::UsersWrite => "Bearer error=\"insufficient_scope\", scope=\"users:write\"",
            Scope::SessionsWrite => "Bearer error=\"insufficient_scope\", scope=\"sessions:write\"",
            Scope::AuditRead => "Bearer error=\"insufficient_scope\", scope=\"audit:read\"",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One entry of `ADMIN_API_TOKENS`. `Debug` shows no hash.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// Names the token in the audit trail (`actor` = `admin:<id>`).
    pub id: String,
    scopes: u8,
    /// The token's SHA-256, 64 lower-case hex digits.
    hash: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminToken({}, scopes {:#06b})", self.id, self.scopes)
    }
}

impl AdminToken {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes & scope.bit() != 0
    }
}

/// Longest token id.
pub const MAX_ID: usize = 40;

/// Parses `ADMIN_API_TOKENS`; empty is no token. A problem names the entry
/// by its position only: an entry is never echoed, in case a token was
/// pasted where its hash belongs.
pub fn parse_tokens(value: &str) -> Result<Vec<AdminToken>, String> {
    let mut tokens: Vec<AdminToken> = Vec::new();
    for (n, entry) in value.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty()).enumerate() {
        let token = parse_entry(entry).ok_or_else(|| {
            format!(
                "entry {}: must be <token_id>:<scope>[ <scope>...]:<sha256>, the id 1 to 40 of A-Z a-z 0-9 _ . -, \
                 the scopes of users:read users:write sessions:write audit:read, and the token's SHA-256 in \
                 64 hex digits, not the token (scripts/admin-token.sh prints the entry)",
                n + 1
            )
        })?;
        if tokens.iter().any(|t| t.id == token.id || t.hash == token.hash) {
            return Err(format!("entry {}: repeats a token id or a token", n + 1));
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// One entry, if well formed: the id before the first `:`, the hash after
/// the last, the scopes between (scope names have a `:` of their own).
fn parse_entry(entry: &str) -> Option<AdminToken> {
    let (id, rest) = entry.split_once(':')?;
    let (scopes, hash) = rest.rsplit_once(':')?;
    let id_ok =
        (1..=MAX_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    let hash_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    let mut bits = 0;
    for scope in scopes.split(' ').filter(|s| !s.is_empty()) {
        bits |= Scope::parse(scope)?.bit();
    }
    let hash = hash.to_ascii_lowercase();
    (id_ok && hash_ok && bits != 0).then(|| AdminToken { id: id.to_string(), scopes: bits, hash })
}

/// The entry whose hash is the presented token's. Every entry is compared,
/// in constant time, and the match is selected without a branch, so the
/// time taken depends only on how many entries there are.
pub fn find<'a>(tokens: &'a [AdminToken], presented: &str) -> Option<&'a AdminToken> {
    let hash = hex(&sha256(presented.as_bytes()));
    let mut found = Choice::from(0);
    let mut index = 0u32;
    for (i, token) in tokens.iter().enumerate() {
        // `ct_eq`'s length check leaks nothing: every hash has 64 digits.
        let same = Choice::from(ct_eq(token.hash.as_bytes(), hash.as_bytes()) as u8);
        index.conditional_assign(&(i as u32), same);
        found |= same;
    }
    bool::from(found).then(|| &tokens[index as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::crypto::hex;

    pub fn entry(id: &str, scopes: &str, token: &str) -> String {
        format!("{id}:{scopes}:{}", hex(&sha256(token.as_bytes())))
    }

    #[test]
    fn entries_parse_with_their_scopes() {
        let upper_hex = hex(&sha256(b"oea_c")).to_uppercase();
        let value = format!(
            "{},\n {} \r\n\nA.b_c-9:sessions:write:{upper_hex}",
            entry("ops", "users:read users:write sessions:write audit:read", "oea_a"),
            entry("support", "users:read  audit:read users:read", "oea_b"),
        );
        let tokens = parse_tokens(&value).unwrap();
        assert_eq!(tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["ops", "support", "A.b_c-9"]);
        assert!(Scope::ALL.iter().all(|s| tokens[0].allows(*s)));
        let support: Vec<Scope> = Scope::ALL.into_iter().filter(|s| tokens[1].allows(*s)).collect();
        assert_eq!(support, [Scope::UsersRead, Scope::AuditRead]);
        assert_eq!(find(&tokens, "oea_c").map(|t| t.id.as_str()), Some("A.b_c-9"), "upper-case hex");
        assert!(parse_tokens("").unwrap().is_empty());
        assert!(parse_tokens(" ,\n, ").unwrap().is_empty());
        assert!(!format!("{tokens:?}").contains(&hex(&sha256(b"oea_a"))), "Debug shows no hash");
    }

    #[test]
    fn malformed_entries_are_refused_without_being_echoed() {
        let good = entry("ops", "users:read", "oea_a");
        let hash = hex(&sha256(b"oea_secret_token"));
        for (value, needle) in [
            ("oea_secret_token".to_string(), "entry 1: must be"),
            (format!("{good},ops:users:read"), "entry 2: must be"),
            (format!("{good},ops:{hash}"), "entry 2: must be"),
            (format!(":users:read:{hash}"), "must be"),
            (format!("{}:users:read:{hash}", "x".repeat(41)), "must be"),
            (format!("op s:users:read:{hash}"), "must be"),
            (format!("ops::{hash}"), "must be"),
            (format!("ops:  :{hash}"), "must be"),
            (format!("ops:users:admin:{hash}"), "must be"),
            (format!("ops:Users:Read:{hash}"), "must be"),
            (format!("ops:*:{hash}"), "must be"),
            ("ops:users:read:oea_secret_token".to_string(), "must be"),
            (format!("ops:users:read:{}", &hash[..62]), "must be"),
            (format!("ops:users:read:{hash}00"), "must be"),
            (format!("ops:users:read:{}g", &hash[..63]), "must be"),
            (format!("{good},{}", entry("ops", "audit:read", "oea_b")), "entry 2: repeats a token id"),
            (format!("{good},{}", entry("other", "audit:read", "oea_a")), "entry 2: repeats a token"),
        ] {
            let problem = parse_tokens(&value).expect_err(&value);
            assert!(problem.contains(needle), "{value}: {problem}");
            assert!(!problem.contains("oea_secret") && !problem.contains(&hash[..16]), "{problem}");
        }
    }

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let value = [entry("a", "users:read", "oea_one"), entry("b", "audit:read", "oea_two")].join(",");
        let tokens = parse_tokens(&value).unwrap();
        assert_eq!(find(&tokens, "oea_one").unwrap().id, "a");
        assert_eq!(find(&tokens, "oea_two").unwrap().id, "b");
        for other in ["", "oea_on", "oea_one ", "OEA_ONE", &hex(&sha256(b"oea_one"))] {
            assert!(find(&tokens, other).is_none(), "{other:?}");
        }
        assert!(find(&[], "oea_one").is_none());
    }

    #[test]
    fn each_scope_has_its_name_and_challenge() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
            let challenge = scope.challenge();
            assert!(challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\""), "{challenge}");
            assert!(challenge.ends_with(&format!("scope=\"{}\"", scope.as_str())), "{challenge}");
        }
        assert_eq!(Scope::parse("users:READ"), None);
    }
}
