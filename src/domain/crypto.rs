//! The few primitives the rules are built on: CSPRNG bytes, HMAC-SHA256,
//! SHA-256, constant-time comparison and hex.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Where random bytes come from. Flows take theirs from the port
/// (`ports::Ports::entropy`), so tests can inject a seeded source.
pub trait Entropy {
    fn fill(&self, buf: &mut [u8]);
}

/// The platform CSPRNG (`crypto.getRandomValues` on Workers, the OS
/// generator natively): OWASP ASVS 6.3.2, NIST SP 800-63B 5.1.4.1.
pub struct Csprng;

impl Entropy for Csprng {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::getrandom(buf).expect("the platform CSPRNG is unavailable");
    }
}

pub fn random_bytes_from<const N: usize>(entropy: &dyn Entropy) -> [u8; N] {
    let mut buf = [0u8; N];
    entropy.fill(&mut buf);
    buf
}

/// Bytes from the platform CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    random_bytes_from(&Csprng)
}

/// HMAC-SHA256 over `parts`, each prefixed with its length so that no two
/// different part lists share an input (`"ab","c"` vs `"a","bc"`).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Equal in time independent of where the inputs differ (ASVS 6.2.x: no
/// timing oracle on a code or token comparison). Lengths are not secret.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// A random version-4 UUID from `entropy`.
pub fn uuid_from(entropy: &dyn Entropy) -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_bytes_from::<16>(entropy)).into_uuid()
}

/// A random version-4 UUID from the CSPRNG.
pub fn new_uuid() -> uuid::Uuid {
    uuid_from(&Csprng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_when_given_one_part() {
        // RFC 4231 test case 2, with our length prefix applied by hand.
        let data = b"what do ya want for nothing?";
        let mut framed = (data.len() as u64).to_be_bytes().to_vec();
        framed.extend_from_slice(data);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(&framed);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(hmac_sha256(b"Jefe", &[data]), expected);
        // And plain HMAC of the RFC vector, to pin the primitive itself.
        let mut plain = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        plain.update(data);
        assert_eq!(
            hex(&plain.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_parts_are_framed() {
        assert_ne!(hmac_sha256(b"k", &[b"ab", b"c"]), hmac_sha256(b"k", &[b"a", b"bc"]));
        assert_ne!(hmac_sha256(b"k1", &[b"x"]), hmac_sha256(b"k2", &[b"x"]));
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(from_hex("0001abff").unwrap(), bytes);
        assert!(from_hex("0g").is_none());
        assert!(from_hex("abc").is_none());
    }

    #[test]
    fn uuids_are_random_v4() {
        let a = new_uuid();
        assert_eq!(a.get_version_num(), 4);
        assert_ne!(a, new_uuid());
    }
}
