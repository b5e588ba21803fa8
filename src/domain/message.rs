//! The texts that carry a code: email subject, plain text and HTML bodies,
//! and the SMS body. Pure; the code appears here and in no other output.

use super::destination::Channel;
use super::otp::{OtpCode, Purpose};

/// Everything a message is made from.
pub struct MessageInput<'a> {
    pub app_name: &'a str,
    pub purpose: Purpose,
    pub code: &'a OtpCode,
    pub channel: Channel,
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Subjects per purpose, as the reference names them.
fn subject(purpose: Purpose, app: &str) -> String {
    match purpose {
        Purpose::Login => format!("Your {app} Login Code"),
        Purpose::Register => "Verify Your Email".to_string(),
        Purpose::Verify => "Email Verification Code".to_string(),
        Purpose::Reset => "Password Reset Code".to_string(),
    }
}

/// "5 minutes", "1 minute", "30 seconds": the real lifetime of the code.
pub fn lifetime(seconds: u64) -> String {
    if seconds % 60 == 0 {
        let m = seconds / 60;
        format!("{m} minute{}", if m == 1 { "" } else { "s" })
    } else {
        format!("{seconds} second{}", if seconds == 1 { "" } else { "s" })
    }
}

pub fn email(input: &MessageInput) -> EmailMessage {
    let code = input.code.expose();
    let life = lifetime(input.ttl_seconds);
    let app = input.app_name;
    let text = format!(
        "Your {app} verification code is: {code}\n\n\
         This code will expire in {life}.\n\n\
         If you didn't request this code, please ignore this email.\n"
    );
    let (app_h, life_h) = (escape_html(app), escape_html(&life));
    let html = format!(
        "<div style=\"font-family: Arial, sans-serif; max-width: 600px; margin: 0 auto;\">\
         <h2>Your {app_h} Verification Code</h2>\
         <div style=\"background: #f5f5f5; padding: 20px; border-radius: 5px; margin: 20px 0;\">\
         <h1 style=\"text-align: center; color: #333; letter-spacing: 5px;\">{code}</h1></div>\
         <p>This code will expire in {life_h}.</p>\
         <p style=\"color: #666; font-size: 14px;\">If you didn't request this code, please ignore this email.</p>\
         </div>"
    );
    EmailMessage { subject: subject(input.purpose, app), text, html }
}

pub fn sms(input: &MessageInput) -> String {
    format!(
        "Your {} verification code is: {}. It expires in {}.",
        input.app_name,
        input.code.expose(),
        lifetime(input.ttl_seconds)
    )
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

    fn input(code: &OtpCode, ttl: u64) -> MessageInput<'_> {
        MessageInput { app_name: "Acme <b>", purpose: Purpose::Login, code, channel: Channel::Email, ttl_seconds: ttl }
    }

    #[test]
    fn lifetimes_read_naturally() {
        assert_eq!(lifetime(300), "5 minutes");
        assert_eq!(lifetime(60), "1 minute");
        assert_eq!(lifetime(90), "90 seconds");
        assert_eq!(lifetime(1), "1 second");
    }

    #[test]
    fn email_states_the_real_lifetime_and_escapes_html() {
        let code = OtpCode::parse("123456", 6).unwrap();
        let m = email(&input(&code, 300));
        assert!(m.text.contains("123456") && m.text.contains("5 minutes"));
        assert!(m.html.contains("Acme &lt;b&gt;") && !m.html.contains("<b>"));
        assert_eq!(m.subject, "Your Acme <b> Login Code");
    }
}
