//! SMS pumping guard: which phone numbers a code may be texted to.
//!
//! Pumping fraud requests codes for numbers whose operator (or the number's
//! holder) earns a share of every message: premium-rate and shared-cost
//! ranges, non-geographic networks, and whole high-cost countries. No real
//! user needs a login code there, so the service refuses them before
//! anything is counted or sent.
//!
//! Three lists decide, all digit prefixes of the E.164 number without '+':
//!
//! - `DEFAULT_BLOCKED`, below: documented ranges, each group with its source;
//! - the operator's allow list (`SMS_ALLOWED_COUNTRY_CODES`): when set, only
//!   numbers under one of its prefixes may get a text;
//! - the operator's block list (`SMS_BLOCKED_PREFIXES`), added to the default.
//!
//! The decision, in this order:
//!
//! 1. a number under an operator-blocked prefix is refused, whatever else;
//! 2. with an allow list, a number under none of its prefixes is refused as
//!    `NotAllowedCountry`;
//! 3. a number under a default-blocked prefix is refused unless the operator
//!    allowed a prefix at least as long that it also falls under: the longer,
//!    more specific prefix wins. So `1876` allows Jamaica (the default entry
//!    is `1876` too), `1` does not (one digit is less specific than four), and
//!    `44` does not allow UK premium rate `449` while `449` would.
//!
//! ITU country calling codes are prefix-free (no code is the start of
//! another), so a prefix test is exact: `44` matches the UK and nothing
//! else. No entry of the default table is under another (a test checks it),
//! so at most one default entry matches a number.
//!
//! US territories (Puerto Rico 787/939, US Virgin Islands 340, Guam 671,
//! Northern Mariana Islands 670, American Samoa 684) count as the US: they
//! are US jurisdictions, regulated by the FCC like the states, so they are
//! not in the NANP group below.
//!
//! Maintaining the table: re-check a group against its source, keep one
//! entry per range (never one under another, which the tests refuse), and
//! leave out a range you cannot confirm rather than guess: a missing range
//! costs at most `SMS_DAILY_CAP` messages, a wrongly blocked mobile range
//! locks real users out.

use super::destination::Phone;

/// Why a default-blocked range is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// The caller pays a surcharge that goes to the number's holder.
    PremiumRate,
    /// The caller pays part of the cost and the holder takes a share.
    SharedCost,
    /// Forwarding numbers that are not tied to a line or a handset.
    PersonalNumbering,
    /// ITU global services with no subscribers' handsets (freephone, OCHA).
    GlobalService,
    /// ITU shared codes for international networks (+882, +883).
    InternationalNetwork,
    /// Satellite networks (+870 Inmarsat, +881 GMSS).
    Satellite,
    /// NANP (+1) area codes of countries other than the US and Canada.
    NanpOutsideUsCanada,
    /// Countries the SMS provider does not deliver to at all.
    ProviderUnsupported,
    /// A prefix in the operator's `SMS_BLOCKED_PREFIXES`.
    OperatorBlocked,
}

impl Category {
    /// A stable name for logs and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::PremiumRate => "premium_rate",
            Category::SharedCost => "shared_cost",
            Category::PersonalNumbering => "personal_numbering",
            Category::GlobalService => "global_service",
            Category::InternationalNetwork => "international_network",
            Category::Satellite => "satellite",
            Category::NanpOutsideUsCanada => "nanp_outside_us_canada",
            Category::ProviderUnsupported => "provider_unsupported",
            Category::OperatorBlocked => "operator_blocked",
        }
    }
}

use Category::*;

/// The default block list: `(prefix, category, note)`, the prefix being
/// E.164 digits without '+'. Every range was checked against the source in
/// its group's comment and cross-checked against Google libphonenumber's
/// `resources/PhoneNumberMetadata.xml` (commit f7e3e88c, 2026-07-17), which
/// classifies numbers by type from the same national plans.
pub const DEFAULT_BLOCKED: &[(&str, Category, &str)] = &[
    // ITU global codes. Source: ITU-T, List of ITU-T Recommendation E.164
    // assigned country codes (https://www.itu.int/pub/T-SP-E.164D) and the
    // ITU database of shared country codes
    // (https://www.itu.int/net/itu-t/inrdb/e164_intlsharedcc.aspx); UIFN:
    // https://www.itu.int/en/ITU-T/inr/unum/Pages/uifn.aspx; ISCS and IPRS:
    // ITU-T E.169 (https://www.itu.int/rec/T-REC-E.169-200205-I/en).
    ("800", GlobalService, "Universal International Freephone Numbers (UIFN)"),
    ("888", GlobalService, "Telecommunications for Disaster Relief (OCHA)"),
    ("808", SharedCost, "International Shared Cost Service (ISCS)"),
    ("979", PremiumRate, "International Premium Rate Service (IPRS)"),
    ("878", PersonalNumbering, "Universal Personal Telecommunication (UPT)"),
    ("870", Satellite, "Inmarsat Single Network Access Code (SNAC)"),
    ("881", Satellite, "Global Mobile Satellite System (GMSS): Iridium, Globalstar and others"),
    ("882", InternationalNetwork, "International networks (includes Thuraya satellite, 882 16)"),
    ("883", InternationalNetwork, "International networks (mostly IoT and VoIP operators)"),
    // NANP area codes outside the US and Canada. Source: NANPA, NPA reports
    // and NPA query (https://nationalnanpa.com/reports/reports_npa.html,
    // https://nationalnanpa.com/enas/npa_query.do); the same 21 codes are the
    // non-US, non-Canadian territories of country code 1 in libphonenumber.
    ("1242", NanpOutsideUsCanada, "Bahamas"),
    ("1246", NanpOutsideUsCanada, "Barbados"),
    ("1264", NanpOutsideUsCanada, "Anguilla"),
    ("1268", NanpOutsideUsCanada, "Antigua and Barbuda"),
    ("1284", NanpOutsideUsCanada, "British Virgin Islands"),
    ("1345", NanpOutsideUsCanada, "Cayman Islands"),
    ("1441", NanpOutsideUsCanada, "Bermuda"),
    ("1473", NanpOutsideUsCanada, "Grenada"),
    ("1649", NanpOutsideUsCanada, "Turks and Caicos Islands"),
    ("1658", NanpOutsideUsCanada, "Jamaica (overlay of 876)"),
    ("1664", NanpOutsideUsCanada, "Montserrat"),
    ("1721", NanpOutsideUsCanada, "Sint Maarten"),
    ("1758", NanpOutsideUsCanada, "Saint Lucia"),
    ("1767", NanpOutsideUsCanada, "Dominica"),
    ("1784", NanpOutsideUsCanada, "Saint Vincent and the Grenadines"),
    ("1809", NanpOutsideUsCanada, "Dominican Republic"),
    ("1829", NanpOutsideUsCanada, "Dominican Republic (overlay of 809)"),
    ("1849", NanpOutsideUsCanada, "Dominican Republic (overlay of 809)"),
    ("1868", NanpOutsideUsCanada, "Trinidad and Tobago"),
    ("1869", NanpOutsideUsCanada, "Saint Kitts and Nevis"),
    ("1876", NanpOutsideUsCanada, "Jamaica"),
    // NANP premium rate. Source: NANPA (as above): 900 is the service access
    // code for premium services.
    ("1900", PremiumRate, "NANP 900 premium services"),
    // United Kingdom. Source: Ofcom, UK Calling
    // (https://www.ofcom.org.uk/phones-and-broadband/phone-numbers/uk-calling-for-businesses/):
    // 09 premium rate; 084 and 087 service numbers, whose service charge goes
    // to the called organisation. Ofcom, 070 guidance
    // (http://www.ofcom.org.uk/telecoms/ioi/numbers/num_070_guide): 070 is
    // set aside for personal numbering. UK mobiles are 071-075, 07624, 077-079.
    ("449", PremiumRate, "UK 09 premium rate services"),
    ("4484", SharedCost, "UK 084 service numbers"),
    ("4487", SharedCost, "UK 087 service numbers"),
    ("4470", PersonalNumbering, "UK 070 personal numbering"),
    // Germany. Source: Bundesnetzagentur, Nummerierung, Rufnummernarten
    // (https://www.bundesnetzagentur.de/DE/Sachgebiete/Telekommunikation/Unternehmen_Institutionen/Nummerierung/start.html):
    // (0)900 Premium-Dienste, (0)137 kurzzeitiger Massenverkehr, (0)180
    // Service-Dienste, (0)700 persönliche Rufnummern. Mobiles are 015-017.
    ("49900", PremiumRate, "Germany 0900 Premium-Dienste"),
    ("49137", PremiumRate, "Germany 0137 mass calling (televoting), charged per call"),
    ("49180", SharedCost, "Germany 0180 Service-Dienste"),
    ("49700", PersonalNumbering, "Germany 0700 persönliche Rufnummern"),
    // France. Source: ARCEP, plan national de numérotation (décision
    // n° 2018-0881 modifiée) and décision n° 2012-0856 on 08 numbers
    // (https://juriblio.fr/decisions/decision-no-2012-0856-du-17-juillet-2012/160448216):
    // 0800-0805 free, 0806-0809 standard rate, 081, 082 and 089 "tarification
    // majorée" (surcharged). Mobiles are 06 and 07.
    ("3381", PremiumRate, "France 081 numéros à tarification majorée"),
    ("3382", PremiumRate, "France 082 numéros à tarification majorée"),
    ("3389", PremiumRate, "France 089 numéros à tarification majorée"),
    // Italy. Source: AGCOM delibere 418/07/CONS and 201/08/CONS, the premium
    // prefixes barred by default (https://www.dirittodellinformatica.it/telefonia/telefonia-news/agcom-blocco-permanente-prefissi-144-166-892-899.html).
    // Mobiles are 3xx; geographic numbers keep their leading 0 (+39 0...).
    ("39144", PremiumRate, "Italy 144 servizi a sovrapprezzo"),
    ("39166", PremiumRate, "Italy 166 servizi a sovrapprezzo"),
    ("39892", PremiumRate, "Italy 892 servizi a sovrapprezzo"),
    ("39899", PremiumRate, "Italy 899 servizi a sovrapprezzo"),
    // Spain. Source: Ministerio, El Plan Nacional de Numeración - Guía
    // práctica de usuario
    // (https://www.minetur.gob.es/telecomunicaciones/es-ES/Servicios/Numeracion/Documents/Guia_Numeracion.pdf):
    // 803, 806, 807 and 905 tarificación adicional, 901 pago compartido, 70
    // numeración personal. Mobiles are 6xx and 71-74.
    ("34803", PremiumRate, "Spain 803 tarificación adicional (adult services)"),
    ("34806", PremiumRate, "Spain 806 tarificación adicional (entertainment)"),
    ("34807", PremiumRate, "Spain 807 tarificación adicional (professional services)"),
    ("34905", PremiumRate, "Spain 905 mass calling (televoting), charged per call"),
    ("34901", SharedCost, "Spain 901 pago compartido"),
    ("3470", PersonalNumbering, "Spain 70 numeración personal"),
    // Netherlands. Source: ACM via business.gov.nl, paid information numbers
    // (https://business.gov.nl/regulation/company-paid-free-telephone-numbers/)
    // and ACM (https://acm.nl/en/publications/acm-warns-providers-premium-rate-telephone-numbers).
    // Mobiles are 06.
    ("31900", PremiumRate, "Netherlands 0900 paid information numbers"),
    ("31906", PremiumRate, "Netherlands 0906 paid information numbers (adult)"),
    ("31909", PremiumRate, "Netherlands 0909 paid information numbers (entertainment)"),
    // Australia. Source: ACMA, Telephone numbering
    // (https://www.acma.gov.au/Home/Industry/Telco/Numbering/Managing-numbers/telephone-numbering):
    // premium rate numbers start with 190 or 19; local rate numbers with 13
    // or 1300. Mobiles are 04.
    ("6119", PremiumRate, "Australia 19 and 190 premium rate numbers"),
    ("6113", SharedCost, "Australia 13 and 1300 local rate numbers"),
    // Countries Twilio does not deliver messages to, so a send could only
    // fail. Source: Twilio error 30649 (as above) and Verify error 60238
    // (https://www.twilio.com/docs/api/errors/60238).
    ("53", ProviderUnsupported, "Cuba"),
    ("98", ProviderUnsupported, "Iran"),
    ("963", ProviderUnsupported, "Syria"),
];

/// Why an SMS may not go to a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsRefusal {
    /// An allow list is set and the number is under none of its prefixes.
    NotAllowedCountry,
    /// The number is in a blocked range.
    HighRisk(Category),
}

/// The operator's lists and the default one, decided as the module comment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsPolicy {
    allowed: Vec<String>,
    blocked: Vec<String>,
    default_blocked: &'static [(&'static str, Category, &'static str)],
}

impl SmsPolicy {
    /// `allowed`: SMS_ALLOWED_COUNTRY_CODES entries (digit prefixes, 1 to 6 digits: a calling code like 44, or a NANP
    /// area like 1876); empty = every destination not blocked.
    /// `blocked`: SMS_BLOCKED_PREFIXES entries (digit prefixes, 1 to 15 digits), added to the default list.
    /// Both as `parse_prefixes` returns them.
    pub fn new(allowed: Vec<String>, blocked: Vec<String>) -> SmsPolicy {
        // An empty prefix would match every number; parse_prefixes never yields one.
        let keep = |v: Vec<String>| v.into_iter().filter(|p| !p.is_empty()).collect();
        SmsPolicy { allowed: keep(allowed), blocked: keep(blocked), default_blocked: DEFAULT_BLOCKED }
    }

    /// `None` if an SMS may go to `phone`; otherwise why not.
    pub fn refusal(&self, phone: &Phone) -> Option<SmsRefusal> {
        let digits = phone.digits();
        if self.blocked.iter().any(|p| digits.starts_with(p.as_str())) {
            return Some(SmsRefusal::HighRisk(Category::OperatorBlocked));
        }
        let allowed = longest_match(self.allowed.iter().map(String::as_str), digits);
        if !self.allowed.is_empty() && allowed.is_none() {
            return Some(SmsRefusal::NotAllowedCountry);
        }
        let default = self
            .default_blocked
            .iter()
            .filter(|(prefix, _, _)| digits.starts_with(prefix))
            .max_by_key(|(prefix, _, _)| prefix.len());
        match default {
            Some((prefix, category, _)) if allowed.is_none_or(|a| a.len() < prefix.len()) => {
                Some(SmsRefusal::HighRisk(*category))
            }
            _ => None,
        }
    }
}

/// The default list and no operator lists.
impl Default for SmsPolicy {
    fn default() -> SmsPolicy {
        SmsPolicy::new(Vec::new(), Vec::new())
    }
}

/// The longest of `prefixes` that `digits` starts with.
fn longest_match<'a>(prefixes: impl Iterator<Item = &'a str>, digits: &str) -> Option<&'a str> {
    prefixes.filter(|p| digits.starts_with(p)).max_by_key(|p| p.len())
}

/// Parses a setting's comma-separated digit prefixes ("+44, 1876"); Err names the bad entry.
/// Entries are trimmed and may start with '+'; empty entries (a trailing comma) are skipped. Each must be 1 to
/// `max_len` ASCII digits and must not start with 0: no E.164 number does, and "0044" is a dialling prefix, not a
/// calling code.
pub fn parse_prefixes(value: &str, max_len: usize) -> Result<Vec<String>, String> {
    let mut prefixes = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let digits = entry.strip_prefix('+').unwrap_or(entry);
        let ok = (1..=max_len).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !ok {
            return Err(format!("{entry:?} is not a prefix of 1 to {max_len} digits that does not start with 0"));
        }
        prefixes.push(digits.to_string());
    }
    Ok(prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(s: &str) -> Phone {
        Phone::parse(s).unwrap()
    }

    fn policy(allowed: &[&str], blocked: &[&str]) -> SmsPolicy {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        SmsPolicy::new(v(allowed), v(blocked))
    }

    fn refusal(p: &SmsPolicy, number: &str) -> Option<SmsRefusal> {
        p.refusal(&phone(number))
    }

    const fn high(c: Category) -> Option<SmsRefusal> {
        Some(SmsRefusal::HighRisk(c))
    }

    #[test]
    fn the_problem_statements_numbers_are_refused_by_default() {
        let p = policy(&[], &[]);
        assert_eq!(refusal(&p, "+19005550100"), high(PremiumRate));
        assert_eq!(refusal(&p, "+18765550100"), high(NanpOutsideUsCanada), "Jamaica");
        assert_eq!(refusal(&p, "+16585550100"), high(NanpOutsideUsCanada), "Jamaica's overlay");
        assert_eq!(refusal(&p, "+12845550100"), high(NanpOutsideUsCanada), "British Virgin Islands");
        assert_eq!(refusal(&p, "+16495550100"), high(NanpOutsideUsCanada), "Turks and Caicos");
        assert_eq!(refusal(&p, "+881612345678"), high(Satellite), "Iridium");
        assert_eq!(refusal(&p, "+8821612345678"), high(InternationalNetwork), "Thuraya, under 882");
        assert_eq!(refusal(&p, "+5351234567"), high(ProviderUnsupported), "Cuba mobile");
    }

    #[test]
    fn other_default_ranges_are_refused() {
        let p = policy(&[], &[]);
        for (number, category) in [
            ("+80012345678", GlobalService),
            ("+80812345678", SharedCost),
            ("+979123456789", PremiumRate),
            ("+870301234567", Satellite),
            ("+883510012345", InternationalNetwork),
            ("+449098790000", PremiumRate),
            ("+448712345678", SharedCost),
            ("+447012345678", PersonalNumbering),
            ("+499001234567", PremiumRate),
            ("+4913712345678", PremiumRate),
            ("+33891234567", PremiumRate),
            ("+39899123456", PremiumRate),
            ("+34806123456", PremiumRate),
            ("+31900123456", PremiumRate),
            ("+611900123456", PremiumRate),
            ("+989121234567", ProviderUnsupported),
        ] {
            assert_eq!(refusal(&p, number), high(category), "{number}");
        }
    }

    #[test]
    fn ordinary_mobiles_and_us_territories_are_allowed() {
        let p = policy(&[], &[]);
        for number in [
            "+14155550100",   // US
            "+16135550100",   // Canada
            "+17875550100",   // Puerto Rico: US
            "+19395550100",   // Puerto Rico's overlay
            "+13405550100",   // US Virgin Islands
            "+16715550100",   // Guam
            "+16705550100",   // Northern Mariana Islands
            "+16845550100",   // American Samoa
            "+18005550100",   // US toll free: can take texts, no revenue share
            "+447700900123",  // UK mobile
            "+447624123456",  // Isle of Man mobile, not a pager
            "+4915112345678", // Germany mobile
            "+4917012345678", // Germany mobile
            "+33612345678",   // France mobile
            "+33712345678",   // France mobile
            "+919812345678",  // India
            "+393123456789",  // Italy mobile
            "+34612345678",   // Spain mobile
            "+34712345678",   // Spain mobile in 71-74, not personal numbering 70
            "+31612345678",   // Netherlands mobile
            "+61412345678",   // Australia mobile
            "+5511912345678", // Brazil
            "+8613812345678", // China
            "+27821234567",   // South Africa
        ] {
            assert_eq!(refusal(&p, number), None, "{number}");
        }
    }

    #[test]
    fn an_allowed_prefix_as_long_as_the_blocked_one_lifts_it() {
        let jamaica = policy(&["1", "1876"], &[]);
        assert_eq!(refusal(&jamaica, "+18765550100"), None);
        assert_eq!(refusal(&jamaica, "+14155550100"), None);
        assert_eq!(refusal(&jamaica, "+16585550100"), high(NanpOutsideUsCanada), "876 does not allow 658");
        assert_eq!(refusal(&jamaica, "+12425550100"), high(NanpOutsideUsCanada), "nor the Bahamas");
        assert_eq!(refusal(&jamaica, "+19005550100"), high(PremiumRate));
        assert_eq!(refusal(&jamaica, "+447700900123"), Some(SmsRefusal::NotAllowedCountry));

        let only_jamaica = policy(&["1876"], &[]);
        assert_eq!(refusal(&only_jamaica, "+18765550100"), None);
        assert_eq!(refusal(&only_jamaica, "+14155550100"), Some(SmsRefusal::NotAllowedCountry));
    }

    #[test]
    fn a_shorter_allowed_prefix_does_not_lift_a_block() {
        let nanp = policy(&["1"], &[]);
        assert_eq!(refusal(&nanp, "+14155550100"), None);
        assert_eq!(refusal(&nanp, "+18765550100"), high(NanpOutsideUsCanada), "1 is not the whole Caribbean");

        let uk = policy(&["44"], &[]);
        assert_eq!(refusal(&uk, "+447700900123"), None);
        assert_eq!(refusal(&uk, "+449098790000"), high(PremiumRate), "44 does not allow 449");
        assert_eq!(refusal(&policy(&["44", "449"], &[]), "+449098790000"), None, "449 does");
        assert_eq!(refusal(&policy(&["4490"], &[]), "+449098790000"), None, "longer still");
    }

    #[test]
    fn allowing_a_whole_blocked_country() {
        let p = policy(&["53", "972"], &[]);
        assert_eq!(refusal(&p, "+5351234567"), None);
        assert_eq!(refusal(&p, "+972501234567"), None);
        assert_eq!(refusal(&p, "+14155550100"), Some(SmsRefusal::NotAllowedCountry));
    }

    #[test]
    fn an_operator_block_always_refuses() {
        let p = policy(&[], &["4477009", "1555"]);
        assert_eq!(refusal(&p, "+447700900123"), high(OperatorBlocked));
        assert_eq!(refusal(&p, "+15555550100"), high(OperatorBlocked));
        assert_eq!(refusal(&p, "+447800900123"), None);
        assert_eq!(refusal(&p, "+18765550100"), high(NanpOutsideUsCanada), "the default list still applies");

        let allowed_longer = policy(&["447700900123"], &["4477"]);
        assert_eq!(refusal(&allowed_longer, "+447700900123"), high(OperatorBlocked), "even under a longer allow");
        let outside = policy(&["44"], &["1876"]);
        assert_eq!(refusal(&outside, "+18765550100"), high(OperatorBlocked), "a block wins over not-allowed");
    }

    #[test]
    fn empty_entries_never_match_everything() {
        assert_eq!(refusal(&policy(&[""], &[""]), "+14155550100"), None);
        assert_eq!(refusal(&SmsPolicy::default(), "+18765550100"), high(NanpOutsideUsCanada));
    }

    #[test]
    fn parses_prefixes() {
        assert_eq!(parse_prefixes("+44, 1876", 6), Ok(vec!["44".to_string(), "1876".to_string()]));
        assert_eq!(parse_prefixes("", 6), Ok(vec![]));
        assert_eq!(parse_prefixes(" , 1,", 6), Ok(vec!["1".to_string()]), "empty entries are skipped");
        assert_eq!(parse_prefixes("123456", 6), Ok(vec!["123456".to_string()]));
        assert_eq!(parse_prefixes("123456789012345", 15).map(|v| v.len()), Ok(1));
    }

    #[test]
    fn refuses_bad_prefixes_naming_them() {
        for (value, bad) in [
            ("1,uk", "uk"),
            ("0044", "0044"),
            ("+0", "+0"),
            ("44,+", "+"),
            ("++44", "++44"),
            ("1234567", "1234567"),
            ("1 876", "1 876"),
            ("-1", "-1"),
            ("١٢", "١٢"),
        ] {
            let err = parse_prefixes(value, 6).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{value}: {err}");
        }
        assert!(parse_prefixes("1234567890123456", 15).is_err());
    }

    #[test]
    fn the_default_table_is_well_formed() {
        for (prefix, _, note) in DEFAULT_BLOCKED {
            assert_eq!(parse_prefixes(prefix, 6).as_deref(), Ok(&[prefix.to_string()][..]), "{prefix}");
            assert!(!note.is_empty(), "{prefix}");
        }
        assert!(!DEFAULT_BLOCKED.iter().any(|(_, c, _)| *c == OperatorBlocked));
    }

    #[test]
    fn the_default_table_has_no_duplicate_or_shadowed_entry() {
        // One entry under another would be redundant for blocking, and would
        // make an operator's allowed prefix lift one but not the other.
        for (i, (a, _, _)) in DEFAULT_BLOCKED.iter().enumerate() {
            for (j, (b, _, _)) in DEFAULT_BLOCKED.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{b} is under {a}");
            }
        }
    }

    #[test]
    fn the_nanp_group_is_area_codes_and_spares_the_us_and_canada() {
        let nanp: Vec<&str> =
            DEFAULT_BLOCKED.iter().filter(|(_, c, _)| *c == NanpOutsideUsCanada).map(|(p, _, _)| *p).collect();
        assert_eq!(nanp.len(), 21);
        assert!(nanp.iter().all(|p| p.len() == 4 && p.starts_with('1')));
        for us_or_canada in ["1787", "1939", "1340", "1671", "1670", "1684", "1613", "1416", "1212", "1800"] {
            assert!(!nanp.contains(&us_or_canada), "{us_or_canada}");
        }
    }

    #[test]
    fn category_names_are_distinct() {
        let all = [
            PremiumRate,
            SharedCost,
            PersonalNumbering,
            GlobalService,
            InternationalNetwork,
            Satellite,
            NanpOutsideUsCanada,
            ProviderUnsupported,
            OperatorBlocked,
        ];
        let mut names: Vec<&str> = all.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
