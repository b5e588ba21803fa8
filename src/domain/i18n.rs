//! Every text a user reads in a message, per language, in one place.
//!
//! To add or fix a translation, edit the table below; nothing else changes.
//! Placeholders: `{app}` the service name, `{code}` the code, `{life}` the
//! code's lifetime ("5 minutes"). SMS texts must stay within the GSM-7
//! alphabet (no á, í, ó, ú, ã, õ, ê, ç: they would turn the SMS into a
//! 70-character UCS-2 message); a unit test checks every locale fits one
//! 160-character segment.

use super::otp::Purpose;

pub struct Texts {
    /// BCP 47 primary language subtag.
    pub lang: &'static str,
    pub subject_login: &'static str,
    pub subject_register: &'static str,
    pub subject_verify: &'static str,
    pub subject_reset: &'static str,
    pub heading: &'static str,
    pub code_is: &'static str,
    pub expires: &'static str,
    pub ignore: &'static str,
    /// The SMS body before the WebOTP line.
    pub sms: &'static str,
    /// The same without `{app}`, when the app name does not fit an SMS.
    pub sms_short: &'static str,
    pub minute: &'static str,
    pub minutes: &'static str,
    pub second: &'static str,
    pub seconds: &'static str,
}

pub const LOCALES: [Texts; 5] = [
    Texts {
        lang: "en",
        subject_login: "Your {app} Login Code",
        subject_register: "Verify Your Email for {app}",
        subject_verify: "{app} Email Verification Code",
        subject_reset: "{app} Password Reset Code",
        heading: "Your {app} Verification Code",
        code_is: "Your {app} verification code is: {code}",
        expires: "This code will expire in {life}.",
        ignore: "If you didn't request this code, please ignore this email.",
        sms: "{code} is your {app} verification code. It expires in {life}.",
        sms_short: "{code} is your verification code. It expires in {life}.",
        minute: "minute",
        minutes: "minutes",
        second: "second",
        seconds: "seconds",
    },
    Texts {
        lang: "es",
        subject_login: "Tu código de acceso a {app}",
        subject_register: "Verifica tu correo para {app}",
        subject_verify: "Código de verificación de correo de {app}",
        subject_reset: "Código para restablecer tu contraseña de {app}",
        heading: "Tu código de verificación de {app}",
        code_is: "Tu código de verificación de {app} es: {code}",
        expires: "Este código caduca en {life}.",
        ignore: "Si no solicitaste este código, ignora este correo.",
        sms: "{code} es tu codigo de verificacion de {app}. Caduca en {life}.",
        sms_short: "{code} es tu codigo de verificacion. Caduca en {life}.",
        minute: "minuto",
        minutes: "minutos",
        second: "segundo",
        seconds: "segundos",
    },
    Texts {
        lang: "fr",
        subject_login: "Votre code de connexion {app}",
        subject_register: "Vérifiez votre e-mail pour {app}",
        subject_verify: "Code de vérification d'e-mail {app}",
        subject_reset: "Code de réinitialisation du mot de passe {app}",
        heading: "Votre code de vérification {app}",
        code_is: "Votre code de vérification {app} est : {code}",
        expires: "Ce code expire dans {life}.",
        ignore: "Si vous n'avez pas demandé ce code, ignorez cet e-mail.",
        sms: "{code} est votre code de verification {app}. Il expire dans {life}.",
        sms_short: "{code} est votre code de verification. Il expire dans {life}.",
        minute: "minute",
        minutes: "minutes",
        second: "seconde",
        seconds: "secondes",
    },
    Texts {
        lang: "de",
        subject_login: "Ihr {app}-Anmeldecode",
        subject_register: "Bestätigen Sie Ihre E-Mail-Adresse für {app}",
        subject_verify: "{app}-Code zur E-Mail-Bestätigung",
        subject_reset: "{app}-Code zum Zurücksetzen des Passworts",
        heading: "Ihr {app}-Bestätigungscode",
        code_is: "Ihr {app}-Bestätigungscode lautet: {code}",
        expires: "Dieser Code läuft in {life} ab.",
        ignore: "Wenn Sie diesen Code nicht angefordert haben, ignorieren Sie diese E-Mail.",
        sms: "{code} ist Ihr {app}-Bestaetigungscode. Er laeuft in {life} ab.",
        sms_short: "{code} ist Ihr Bestaetigungscode. Er laeuft in {life} ab.",
        minute: "Minute",
        minutes: "Minuten",
        second: "Sekunde",
        seconds: "Sekunden",
    },
    Texts {
        lang: "pt",
        subject_login: "Seu código de acesso ao {app}",
        subject_register: "Confirme seu e-mail para o {app}",
        subject_verify: "Código de verificação de e-mail do {app}",
        subject_reset: "Código para redefinir sua senha do {app}",
        heading: "Seu código de verificação do {app}",
        code_is: "Seu código de verificação do {app} é: {code}",
        expires: "Este código expira em {life}.",
        ignore: "Se você não solicitou este código, ignore este e-mail.",
        sms: "{code} e seu codigo de verificacao do {app}. Expira em {life}.",
        sms_short: "{code} e seu codigo de verificacao. Expira em {life}.",
        minute: "minuto",
        minutes: "minutos",
        second: "segundo",
        seconds: "segundos",
    },
];

impl Texts {
    pub fn subject(&self, purpose: Purpose) -> &'static str {
        match purpose {
            Purpose::Login => self.subject_login,
            Purpose::Register => self.subject_register,
            Purpose::Verify => self.subject_verify,
            Purpose::Reset => self.subject_reset,
        }
    }

    /// "5 minutes", "1 minute", "90 seconds": the code's real lifetime.
    pub fn lifetime(&self, seconds: u64) -> String {
        if seconds.is_multiple_of(60) {
            let m = seconds / 60;
            format!("{m} {}", if m == 1 { self.minute } else { self.minutes })
        } else {
            format!("{seconds} {}", if seconds == 1 { self.second } else { self.seconds })
        }
    }
}

pub fn english() -> &'static Texts {
    &LOCALES[0]
}

fn by_tag(tag: &str) -> Option<&'static Texts> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    LOCALES.iter().find(|t| t.lang == primary)
}

/// The language of a message: the request's `locale` field if supported,
/// else the best supported `Accept-Language` entry, else English.
pub fn negotiate(locale: Option<&str>, accept_language: Option<&str>) -> &'static Texts {
    if let Some(t) = locale.and_then(by_tag) {
        return t;
    }
    let mut best: Option<(f32, &'static Texts)> = None;
    for entry in accept_language.unwrap_or("").split(',') {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if let Some(t) = by_tag(tag) {
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, t));
            }
        }
    }
    best.map_or(english(), |(_, t)| t)
}

/// GSM 03.38 basic character set, and the extension table characters that
/// take two septets.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENDED: &str = "^{}\\[~]|€\u{c}";

/// Length in GSM-7 septets, or `None` if a character needs UCS-2.
pub fn gsm7_septets(s: &str) -> Option<usize> {
    s.chars().try_fold(0usize, |n, c| {
        if GSM7_BASIC.contains(c) {
            Some(n + 1)
        } else if GSM7_EXTENDED.contains(c) {
            Some(n + 2)
        } else {
            None
        }
    })
}

/// Fits a single SMS segment: GSM-7 and at most 160 septets.
pub fn fits_one_sms(s: &str) -> bool {
    gsm7_septets(s).is_some_and(|n| n <= 160)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_field_wins_then_accept_language_then_english() {
        assert_eq!(negotiate(Some("es-MX"), Some("de")).lang, "es");
        assert_eq!(negotiate(Some("xx"), Some("de-CH, en;q=0.5")).lang, "de");
        assert_eq!(negotiate(None, Some("it, fr;q=0.8, pt;q=0.9")).lang, "pt");
        assert_eq!(negotiate(None, Some("fr;q=0, de;q=0.1")).lang, "de");
        assert_eq!(negotiate(None, Some("zz, *")).lang, "en");
        assert_eq!(negotiate(None, Some("garbage;;;q=x")).lang, "en");
        assert_eq!(negotiate(None, None).lang, "en");
        assert_eq!(negotiate(Some("PT_br"), None).lang, "pt");
    }

    #[test]
    fn lifetimes_are_translated_and_singular_where_due() {
        assert_eq!(english().lifetime(300), "5 minutes");
        assert_eq!(english().lifetime(60), "1 minute");
        assert_eq!(english().lifetime(90), "90 seconds");
        assert_eq!(by_tag("de").unwrap().lifetime(600), "10 Minuten");
        assert_eq!(by_tag("fr").unwrap().lifetime(1), "1 seconde");
    }

    #[test]
    fn gsm7_counting() {
        assert_eq!(gsm7_septets("abc"), Some(3));
        assert_eq!(gsm7_septets("€["), Some(4));
        assert_eq!(gsm7_septets("código"), None);
        assert!(fits_one_sms(&"a".repeat(160)));
        assert!(!fits_one_sms(&"a".repeat(161)));
    }

    #[test]
    fn every_locale_has_every_placeholder() {
        for t in &LOCALES {
            assert!(t.code_is.contains("{code}") && t.code_is.contains("{app}"), "{}", t.lang);
            assert!(t.expires.contains("{life}"), "{}", t.lang);
            assert!(t.sms.contains("{code}") && t.sms.contains("{app}") && t.sms.contains("{life}"), "{}", t.lang);
            assert!(
                t.sms_short.contains("{code}") && t.sms_short.contains("{life}") && !t.sms_short.contains("{app}"),
                "{}",
                t.lang
            );
            assert!(
                gsm7_septets(t.sms).is_some() && gsm7_septets(t.sms_short).is_some(),
                "SMS text of {} leaves GSM-7",
                t.lang
            );
        }
    }
}
