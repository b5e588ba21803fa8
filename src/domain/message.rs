//! The messages that carry a code: email subject, plain text and HTML bodies,
//! and the SMS body, in the user's language. Pure; the code appears here and
//! in no other output.

use super::i18n::{self, Texts};
use super::otp::{OtpCode, Purpose};

/// Everything a message is made from.
pub struct MessageInput<'a> {
    pub app_name: &'a str,
    pub purpose: Purpose,
    pub code: &'a OtpCode,
    /// The real lifetime of the code on its channel.
    pub ttl_seconds: u64,
    pub texts: &'static Texts,
    /// `OTP_WEBOTP_DOMAIN`: adds the origin-bound line `@domain #code`.
    pub webotp_domain: Option<&'a str>,
    /// `SMS_RETRIEVER_APP_HASH`: ends the SMS with the Android app's hash.
    pub retriever_hash: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn fill(template: &str, app: &str, code: &str, life: &str) -> String {
    template.replace("{app}", app).replace("{code}", code).replace("{life}", life)
}

pub fn email(input: &MessageInput) -> EmailMessage {
    let t = input.texts;
    let code = input.code.expose();
    let life = t.lifetime(input.ttl_seconds);
    let app = input.app_name;
    let plain = |template: &str| fill(template, app, code, &life);
    // Every value placed in HTML is escaped, the code included (digits only,
    // but the rule has no exceptions).
    let html_of =
        |template: &str| fill(&escape_html(template), &escape_html(app), &escape_html(code), &escape_html(&life));
    let text = format!("{}\n\n{}\n\n{}\n", plain(t.code_is), plain(t.expires), plain(t.ignore));
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><body>\
         <div style=\"font-family: Arial, sans-serif; max-width: 600px; margin: 0 auto;\">\
         <h2>{heading}</h2>\
         <div style=\"background: #f5f5f5; padding: 20px; border-radius: 5px; margin: 20px 0;\">\
         <h1 style=\"text-align: center; color: #333; letter-spacing: 5px;\">{code}</h1></div>\
         <p>{expires}</p>\
         <p style=\"color: #666; font-size: 14px;\">{ignore}</p>\
         </div></body></html>",
        lang = t.lang,
        heading = html_of(t.heading),
        code = escape_html(code),
        expires = html_of(t.expires),
        ignore = html_of(t.ignore),
    );
    EmailMessage { subject: plain(t.subject(input.purpose)), text, html }
}

/// The SMS body: one GSM-7 segment (160 characters), ending with the WebOTP
/// line `@domain #code` when a domain is configured, so browsers and phones
/// can offer to fill the code in. An app name that would not fit (too long,
/// or outside GSM-7) is left out rather than splitting the message.
pub fn sms(input: &MessageInput) -> String {
    let t = input.texts;
    let code = input.code.expose();
    let life = t.lifetime(input.ttl_seconds);
    // The last line, for the platform that fills the code in: WebOTP's
    // `@domain #code` (WICG WebOTP, "the last line"), or the 11-character
    // hash Android's SMS Retriever matches (Google: a message "no longer
    // than 140 bytes" that ends with the app's hash). The configuration
    // allows one of them.
    let webotp = match (input.webotp_domain, input.retriever_hash) {
        (Some(d), _) => format!("\n\n@{d} #{code}"),
        (None, Some(hash)) => format!("\n\n{hash}"),
        (None, None) => String::new(),
    };
    let with_app = format!("{}{webotp}", fill(t.sms, input.app_name, code, &life));
    if i18n::fits_one_sms(&with_app) {
        return with_app;
    }
    format!("{}{webotp}", fill(t.sms_short, "", code, &life))
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::i18n::{gsm7_septets, negotiate, LOCALES};

    fn input<'a>(code: &'a OtpCode, app: &'a str, ttl: u64, lang: &str, webotp: Option<&'a str>) -> MessageInput<'a> {
        MessageInput {
            app_name: app,
            purpose: Purpose::Login,
            code,
            ttl_seconds: ttl,
            texts: negotiate(Some(lang), None),
            webotp_domain: webotp,
            retriever_hash: None,
        }
    }

    #[test]
    fn email_states_the_real_lifetime_and_escapes_html() {
        let code = OtpCode::parse("123456", 6).unwrap();
        let m = email(&input(&code, "Acme <b>", 300, "en", None));
        assert_eq!(m.subject, "Your Acme <b> Login Code");
        assert!(m.text.starts_with("Your Acme <b> verification code is: 123456\n"));
        assert!(m.text.contains("This code will expire in 5 minutes."));
        assert!(m.html.contains("Acme &lt;b&gt;") && !m.html.contains("<b>"));
        assert!(m.html.contains(">123456</h1>"));
    }

    #[test]
    fn subjects_follow_the_reference_per_purpose() {
        let code = OtpCode::parse("123456", 6).unwrap();
        let subject = |purpose| email(&MessageInput { purpose, ..input(&code, "Acme", 600, "en", None) }).subject;
        assert_eq!(subject(Purpose::Login), "Your Acme Login Code");
        assert_eq!(subject(Purpose::Register), "Verify Your Email for Acme");
        assert_eq!(subject(Purpose::Verify), "Acme Email Verification Code");
        assert_eq!(subject(Purpose::Reset), "Acme Password Reset Code");
    }

    #[test]
    fn messages_are_localized() {
        let code = OtpCode::parse("123456", 6).unwrap();
        let es = email(&input(&code, "Acme", 600, "es", None));
        assert_eq!(es.subject, "Tu código de acceso a Acme");
        assert!(es.text.contains("Este código caduca en 10 minutos."));
        assert_eq!(
            sms(&input(&code, "Acme", 300, "de", None)),
            "123456 ist Ihr Acme-Bestaetigungscode. Er laeuft in 5 Minuten ab."
        );
    }

    #[test]
    fn sms_ends_with_the_webotp_line() {
        let code = OtpCode::parse("123456", 6).unwrap();
        let s = sms(&input(&code, "Acme", 300, "en", Some("acme.test")));
        assert_eq!(s, "123456 is your Acme verification code. It expires in 5 minutes.\n\n@acme.test #123456");
    }

    /// The worst case of every locale fits one GSM-7 segment: a 10-digit
    /// code, the longest lifetime wording, a 40-character app name and a
    /// 60-character WebOTP domain.
    #[test]
    fn every_sms_fits_one_segment() {
        let code = OtpCode::parse("0123456789", 10).unwrap();
        let app = "A".repeat(40);
        let domain = format!("{}.example", "d".repeat(52));
        for t in &LOCALES {
            for ttl in [59, 3600, 1] {
                for purpose in Purpose::ALL {
                    let m = MessageInput {
                        app_name: &app,
                        purpose,
                        code: &code,
                        ttl_seconds: ttl,
                        texts: t,
                        webotp_domain: Some(&domain),
                        retriever_hash: None,
                    };
                    let body = sms(&m);
                    assert!(fits_one(&body), "{}: {} septets: {body}", t.lang, gsm7_septets(&body).unwrap_or(999));
                }
            }
        }
    }

    fn fits_one(s: &str) -> bool {
        crate::domain::i18n::fits_one_sms(s)
    }

    #[test]
    fn an_app_name_outside_gsm7_is_left_out_of_the_sms() {
        let code = OtpCode::parse("123456", 6).unwrap();
        let s = sms(&input(&code, "Ακμή ☂", 300, "en", None));
        assert!(fits_one(&s), "{s}");
        assert!(s.starts_with("123456 is your verification code."), "{s}");
    }

    #[test]
    fn an_sms_for_androids_retriever_ends_with_the_app_hash_in_one_segment() {
        let code = OtpCode::parse("123456", 6).unwrap();
        for lang in LOCALES.iter().map(|t| t.lang) {
            let mut i = input(&code, "Acme Corporation Worldwide", 600, lang, None);
            i.retriever_hash = Some("FA+9qCX9VSu");
            let text = sms(&i);
            assert!(text.ends_with("\n\nFA+9qCX9VSu"), "{text:?}");
            assert!(text.contains("123456"));
            assert!(gsm7_septets(&text).is_some_and(|n| n <= 160), "one GSM-7 segment (140 bytes): {text:?}");
        }
    }
}
