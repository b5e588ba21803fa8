//! One-time passcodes: what they are for, how they are made, how they are
//! stored (a keyed hash, never the code) and why a verification fails.

use std::fmt;

use super::crypto::{hex, hmac_sha256, random_bytes_from, Csprng, Entropy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Login,
    Register,
    Verify,
    Reset,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [Purpose::Login, Purpose::Register, Purpose::Verify, Purpose::Reset];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::Register => "register",
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
        }
    }

    pub fn parse(s: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

pub const MIN_LENGTH: usize = 6;
pub const MAX_LENGTH: usize = 10;

/// A code as digits. `Debug` hides it so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OtpCode([{} digits])", self.0.len())
    }
}

impl OtpCode {
    /// `length` uniformly random decimal digits from the CSPRNG. Rejection
    /// sampling drops the top of the u64 range that is not a whole multiple
    /// of 10^length, so every code is equally likely (no modulo bias).
    pub fn generate(length: usize) -> OtpCode {
        Self::generate_from(length, &Csprng)
    }

    /// A code of `length` digits from `entropy`.
    pub fn generate_from(length: usize, entropy: &dyn Entropy) -> OtpCode {
        Self::generate_with(length, || u64::from_le_bytes(random_bytes_from::<8>(entropy)))
    }

    fn generate_with(length: usize, mut next: impl FnMut() -> u64) -> OtpCode {
        assert!((MIN_LENGTH..=MAX_LENGTH).contains(&length));
        let modulus = 10u64.pow(length as u32);
        let zone = u64::MAX - (u64::MAX % modulus); // values >= zone are rejected
        loop {
            let x = next();
            if x < zone {
                return OtpCode(format!("{:0length$}", x % modulus));
            }
        }
    }

    /// A code as submitted: surrounding whitespace trimmed, then exactly
    /// `length` ASCII digits.
    pub fn parse(input: &str, length: usize) -> Option<OtpCode> {
        let s = input.trim();
        (s.len() == length && s.bytes().all(|b| b.is_ascii_digit())).then(|| OtpCode(s.to_string()))
    }

    /// The code itself, for the message that delivers it. Nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What is stored instead of a code: HMAC-SHA256 keyed by `OTP_PEPPER` over
/// the OTP id, purpose and code, so a leaked table yields no codes and a
/// hash cannot be replayed onto another row: the id is unique, and the row
/// holds the destination (ASVS 2.7.x, NIST SP 800-63B 5.1.3.2 and 5.2.7 on
/// protecting stored verifiers). A verify computes it from the guess before
/// it has read the row, and D1 compares (`Db::attempt_code`).
pub fn code_hash(pepper: &str, otp_id: &str, purpose: Purpose, code: &OtpCode) -> String {
    hex(&hmac_sha256(
        pepper.as_bytes(),
        &[b"otp-v2", otp_id.as_bytes(), purpose.as_str().as_bytes(), code.0.as_bytes()],
    ))
}

/// Why a verification failed, with the reference's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    UnknownRequest,
    AlreadyUsed,
    Expired,
    TooManyAttempts,
    WrongCode,
}

impl VerifyFailure {
    /// The audit trail's outcome: the message as a stable word.
    pub fn audit_outcome(self) -> &'static str {
        match self {
            VerifyFailure::UnknownRequest => "invalid_otp_request",
            VerifyFailure::AlreadyUsed => "otp_already_used",
            VerifyFailure::Expired => "otp_expired",
            VerifyFailure::TooManyAttempts => "too_many_attempts",
            VerifyFailure::WrongCode => "invalid_otp",
        }
    }

    /// The reference's message.
    pub fn message(self) -> &'static str {
        match self {
            VerifyFailure::UnknownRequest => "Invalid OTP request",
            VerifyFailure::AlreadyUsed => "OTP already used",
            VerifyFailure::Expired => "OTP expired",
            VerifyFailure::TooManyAttempts => "Too many attempts",
            VerifyFailure::WrongCode => "Invalid OTP",
        }
    }
}

/// The state of an OTP row that refused an attempt.
pub struct RowState {
    pub is_verified: bool,
    pub invalidated: bool,
    pub expires_at_ms: i64,
    pub attempts: i64,
    pub max_attempts: i64,
}

/// Why a row refused an attempt, checked in the reference's order. A code
/// superseded by a newer one, or whose delivery failed, reads as expired.
pub fn refusal_reason(row: Option<&RowState>, now_ms: i64) -> VerifyFailure {
    match row {
        None => VerifyFailure::UnknownRequest,
        Some(r) if r.is_verified => VerifyFailure::AlreadyUsed,
        Some(r) if r.invalidated || r.expires_at_ms <= now_ms => VerifyFailure::Expired,
        Some(r) if r.attempts >= r.max_attempts => VerifyFailure::TooManyAttempts,
        // The row accepts attempts again (a race with the atomic update):
        // report the failure the client most likely caused.
        Some(_) => VerifyFailure::WrongCode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_configured_length_and_only_digits() {
        for len in MIN_LENGTH..=MAX_LENGTH {
            for _ in 0..200 {
                let c = OtpCode::generate(len);
                assert_eq!(c.expose().len(), len);
                assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }

    /// Per-digit distribution over 100k codes, by chi-squared with 9 degrees
    /// of freedom. The threshold 45.0 is the 1e-6 critical value, so a fair
    /// generator fails about once in a million runs. Pooled over all 600k
    /// digits, a `byte % 10` bias (26/256 vs 25/256) scores about 220 and a
    /// per-position bias of a few percent scores above 45 as well.
    #[test]
    fn digits_are_uniformly_distributed() {
        const N: usize = 100_000;
        const CRITICAL: f64 = 45.0;
        let mut counts = [[0u64; 10]; 6];
        for _ in 0..N {
            let c = OtpCode::generate(6);
            for (pos, b) in c.expose().bytes().enumerate() {
                counts[pos][(b - b'0') as usize] += 1;
            }
        }
        let chi2 = |observed: &[u64; 10]| {
            let expected = observed.iter().sum::<u64>() as f64 / 10.0;
            observed.iter().map(|&o| (o as f64 - expected).powi(2) / expected).sum::<f64>()
        };
        let mut pooled = [0u64; 10];
        for (pos, digits) in counts.iter().enumerate() {
            assert!(chi2(digits) < CRITICAL, "position {pos}: chi2 {:.1}, counts {digits:?}", chi2(digits));
            for d in 0..10 {
                pooled[d] += digits[d];
            }
        }
        assert!(chi2(&pooled) < CRITICAL, "pooled: chi2 {:.1}, counts {pooled:?}", chi2(&pooled));
    }

    /// The same statistic does catch modulo bias, so the test above can fail.
    #[test]
    fn the_uniformity_check_detects_modulo_bias() {
        let mut pooled = [0u64; 10];
        for b in 0..=255u32 {
            pooled[(b % 10) as usize] += 2_344; // 600k digits from biased bytes
        }
        let expected = pooled.iter().sum::<u64>() as f64 / 10.0;
        let chi2: f64 = pooled.iter().map(|&o| (o as f64 - expected).powi(2) / expected).sum();
        assert!(chi2 > 45.0, "{chi2}");
    }

    #[test]
    fn rejection_sampling_drops_the_biased_tail() {
        // The first draw is in the rejected zone; the second is used.
        let mut draws = [u64::MAX, 1_234_567].into_iter();
        let c = OtpCode::generate_with(6, || draws.next().unwrap());
        assert_eq!(c.expose(), "234567");
        let mut draws = [u64::MAX - (u64::MAX % 1_000_000), 42].into_iter();
        assert_eq!(OtpCode::generate_with(6, || draws.next().unwrap()).expose(), "000042");
    }

    #[test]
    fn submitted_codes_are_strict() {
        assert_eq!(OtpCode::parse(" 012345 ", 6).unwrap().expose(), "012345");
        for bad in ["12345", "1234567", "12345a", "١٢٣٤٥٦", "12 345", "+12345", "", "１２３４５６"] {
            assert!(OtpCode::parse(bad, 6).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_code() {
        let c = OtpCode::parse("987654", 6).unwrap();
        assert!(!format!("{c:?}").contains("987654"));
    }

    #[test]
    fn hash_binds_id_purpose_and_code() {
        let code = OtpCode::parse("123456", 6).unwrap();
        let base = code_hash("pepper", "id-1", Purpose::Login, &code);
        assert_eq!(base.len(), 64);
        assert!(!base.contains("123456"));
        assert_eq!(base, code_hash("pepper", "id-1", Purpose::Login, &code));
        let code2 = OtpCode::parse("123457", 6).unwrap();
        for changed in [
            code_hash("pepper2", "id-1", Purpose::Login, &code),
            code_hash("pepper", "id-2", Purpose::Login, &code),
            code_hash("pepper", "id-1", Purpose::Reset, &code),
            code_hash("pepper", "id-1", Purpose::Login, &code2),
        ] {
            assert_ne!(base, changed);
        }
    }

    #[test]
    fn refusals_follow_the_reference_order() {
        let row = |v, i, exp, att| RowState {
            is_verified: v,
            invalidated: i,
            expires_at_ms: exp,
            attempts: att,
            max_attempts: 3,
        };
        assert_eq!(refusal_reason(None, 0), VerifyFailure::UnknownRequest);
        assert_eq!(refusal_reason(Some(&row(true, false, 0, 3)), 10), VerifyFailure::AlreadyUsed);
        assert_eq!(refusal_reason(Some(&row(false, false, 10, 3)), 10), VerifyFailure::Expired);
        assert_eq!(refusal_reason(Some(&row(false, true, 99, 0)), 10), VerifyFailure::Expired);
        assert_eq!(refusal_reason(Some(&row(false, false, 99, 3)), 10), VerifyFailure::TooManyAttempts);
        assert_eq!(VerifyFailure::WrongCode.message(), "Invalid OTP");
    }

    #[test]
    fn purposes_round_trip() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(Purpose::parse("Login"), None);
    }
}
