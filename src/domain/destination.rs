//! Where a code goes: an email address or an E.164 phone number, parsed once
//! at the edge into a normalized value. The same person always maps to the
//! same string, which keys user lookups, OTP rows and rate limits.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Email(Email),
    Phone(Phone),
}

/// The channel a destination is reached on; stored as `otp_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Phone,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Phone => "phone",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "phone" => Some(Channel::Phone),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidDestination;

impl fmt::Display for InvalidDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Invalid email or phone number")
    }
}

/// RFC 5321 limits: 64 octets of local part, 254 for the whole path.
const MAX_LOCAL: usize = 64;
const MAX_EMAIL: usize = 254;
const MAX_LABEL: usize = 63;

impl Email {
    /// Trimmed and lower-cased; a dot-atom local part and a DNS host name with
    /// at least two labels. Quoted local parts, IP literals and non-ASCII
    /// addresses are refused: a sane subset that mail APIs all accept.
    pub fn parse(input: &str) -> Result<Email, InvalidDestination> {
        let s = input.trim().to_ascii_lowercase();
        if s.len() > MAX_EMAIL || !s.is_ascii() {
            return Err(InvalidDestination);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(InvalidDestination)?;
        if !valid_local(local) || !valid_domain(domain) {
            return Err(InvalidDestination);
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The mailbox this address delivers to, for keying rate limits: every
    /// `+tag` variant of a local part is one mailbox (subaddressing, RFC
    /// 5233, offered by Gmail, Outlook, iCloud, Fastmail, Proton ...); Gmail
    /// also ignores dots in the local part and treats googlemail.com as
    /// gmail.com (Google: "Dots don't matter in Gmail addresses"). The
    /// address itself is stored and shown as given.
    pub fn mailbox(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').expect("parsed email has @");
        let local = local.split_once('+').map_or(local, |(base, _)| base);
        let local = if local.is_empty() { "+" } else { local };
        match domain {
            "gmail.com" | "googlemail.com" => format!("{}@gmail.com", local.replace('.', "")),
            _ => format!("{local}@{domain}"),
        }
    }

    /// `user1@example.com` -> `u***1@example.com`, as the reference masks.
    pub fn masked(&self) -> String {
        let (name, domain) = self.0.split_once('@').expect("parsed email has @");
        let masked = if name.len() > 2 {
            format!("{}{}{}", &name[..1], "*".repeat(name.len() - 2), &name[name.len() - 1..])
        } else {
            format!("{}*", &name[..1])
        };
        format!("{masked}@{domain}")
    }
}

fn valid_local(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
    !local.is_empty()
        && local.len() <= MAX_LOCAL
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c)))
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let tld = labels.last().copied().unwrap_or("");
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= MAX_LABEL
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && tld.len() >= 2
        && (tld.chars().all(|c| c.is_ascii_alphabetic()) || tld.starts_with("xn--"))
}

impl Phone {
    /// E.164: `+`, then 2 to 15 digits, the first not 0, once spaces, dashes,
    /// dots and parentheses are removed. Only ASCII digits count.
    pub fn parse(input: &str) -> Result<Phone, InvalidDestination> {
        let compact: String = input.trim().chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
        let digits = compact.strip_prefix('+').ok_or(InvalidDestination)?;
        let ok =
            (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if ok {
            Ok(Phone(compact))
        } else {
            Err(InvalidDestination)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits after `+`, starting with the country calling code.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// `+1234567890` -> `+12*****890`, as the reference masks.
    pub fn masked(&self) -> String {
        let s = &self.0;
        if s.len() > 6 {
            format!("{}{}{}", &s[..3], "*".repeat(s.len() - 6), &s[s.len() - 3..])
        } else {
            s.clone()
        }
    }
}

impl Destination {
    /// An address with `@` is an email; anything else must be a phone number.
    pub fn parse(input: &str) -> Result<Destination, InvalidDestination> {
        if input.contains('@') {
            Email::parse(input).map(Destination::Email)
        } else {
            Phone::parse(input).map(Destination::Phone)
        }
    }

    /// Rebuilds a destination read back from storage (already normalized).
    pub fn from_stored(channel: Channel, value: &str) -> Result<Destination, InvalidDestination> {
        match channel {
            Channel::Email => Email::parse(value).map(Destination::Email),
            Channel::Phone => Phone::parse(value).map(Destination::Phone),
        }
    }

    pub fn channel(&self) -> Channel {
        match self {
            Destination::Email(_) => Channel::Email,
            Destination::Phone(_) => Channel::Phone,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Destination::Email(e) => e.as_str(),
            Destination::Phone(p) => p.as_str(),
        }
    }

    /// What rate limits and the failure budget are keyed by: the mailbox of
    /// an email (`Email::mailbox`), the number of a phone.
    pub fn limit_key(&self) -> String {
        match self {
            Destination::Email(e) => e.mailbox(),
            Destination::Phone(p) => p.as_str().to_string(),
        }
    }

    pub fn masked(&self) -> String {
        match self {
            Destination::Email(e) => e.masked(),
            Destination::Phone(p) => p.masked(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let d = Destination::parse("  User.Name+tag@Example.COM ").unwrap();
        assert_eq!(d.as_str(), "user.name+tag@example.com");
        assert_eq!(d.channel(), Channel::Email);
    }

    #[test]
    fn the_same_person_maps_to_the_same_destination() {
        let a = Destination::parse("Alice@Example.com").unwrap();
        let b = Destination::parse(" alice@example.COM").unwrap();
        assert_eq!(a, b);
        let p = Destination::parse("+1 (555) 010-9999").unwrap();
        let q = Destination::parse("+1.555.010.9999").unwrap();
        assert_eq!(p, q);
        assert_eq!(p.as_str(), "+15550109999");
    }

    #[test]
    fn bad_emails_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b".repeat(250));
        let long_label = format!("a@{}.com", "b".repeat(64));
        for bad in [
            "",
            "@",
            "a@",
            "@example.com",
            "a@b",
            "a@localhost",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a@-example.com",
            "a@example-.com",
            "a@example.c",
            "a@example.123",
            "a b@example.com",
            "a@exa mple.com",
            "\"a\"@example.com",
            "a@[127.0.0.1]",
            "ü@example.com",
            "a@exämple.com",
            "a@@example.com",
            "a@b@example.com",
            "a@example..com",
            &long_local,
            &long_total,
            &long_label,
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidDestination), "{bad:?}");
        }
    }

    #[test]
    fn good_emails_are_accepted() {
        for good in
            ["a@b.co", "first.last@sub.example.org", "x_y-z!#$%&'*+/=?^`{|}~@example.io", "u@xn--bcher-kva.example"]
        {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        let max_local = format!("{}@example.com", "a".repeat(64));
        assert!(Email::parse(&max_local).is_ok());
    }

    #[test]
    fn phones_follow_e164() {
        for good in ["+12", "+123456789012345", "+44 20 7946 0958", "+1-555-010-9999"] {
            assert!(Phone::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "+",
            "+1",
            "+0123456",
            "1234567",
            "001234567",
            "+1234567890123456",
            "+12a456",
            "+١٢٣٤٥٦٧",
            "+12_345",
            "++1234",
            "+1 234 +5",
            "tel:+1234567",
        ] {
            assert_eq!(Phone::parse(bad), Err(InvalidDestination), "{bad:?}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["hello", "", "   ", "12345", "user at example.com"] {
            assert!(Destination::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn masking_follows_the_reference() {
        let m = |s: &str| Destination::parse(s).unwrap().masked();
        assert_eq!(m("user1@example.com"), "u***1@example.com");
        assert_eq!(m("ab@example.com"), "a*@example.com");
        assert_eq!(m("a@example.com"), "a*@example.com");
        assert_eq!(m("+1234567890"), "+12*****890");
        assert_eq!(m("+1234567"), "+12**567");
        assert_eq!(m("+12345"), "+12345");
    }

    #[test]
    fn every_variant_of_one_mailbox_has_one_limit_key() {
        let key = |s: &str| Destination::parse(s).unwrap().limit_key();
        assert_eq!(key("Jane.Doe+news@Gmail.com"), "janedoe@gmail.com");
        assert_eq!(key("j.a.n.e.d.o.e@googlemail.com"), "janedoe@gmail.com");
        assert_eq!(key("janedoe+a+b@gmail.com"), "janedoe@gmail.com");
        // Dots matter elsewhere; +tags are subaddresses everywhere.
        assert_eq!(key("jane.doe+x@example.com"), "jane.doe@example.com");
        assert_ne!(key("jane.doe@example.com"), key("janedoe@example.com"));
        assert_eq!(key("+15551234567"), "+15551234567");
        // The address itself is kept as given.
        assert_eq!(Destination::parse("Jane.Doe+news@Gmail.com").unwrap().as_str(), "jane.doe+news@gmail.com");
    }
}
