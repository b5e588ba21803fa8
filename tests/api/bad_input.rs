//! Whatever a client sends, the answer is a clear JSON error: never a 5xx,
//! never HTML, never a message sent, never an attempt spent.

use serde_json::{json, Value};

use crate::helpers::{assert_error, assert_invalid_otp, json_of, random_email, spawn_app, wrong_code, TestApp};

const REQUEST: &str = "/api/auth/otp/request/";
const VERIFY: &str = "/api/auth/otp/verify/";

async fn post_raw(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.send(app.client.post(app.url(path)).header("content-type", "application/json").body(body)).await
}

async fn assert_validation_error(resp: reqwest::Response, what: &str) {
    let (status, body) = json_of(resp).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{what}: {body}");
    assert!(body["message"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn a_request_without_a_valid_destination_is_refused() {
    let app = spawn_app().await;
    let too_long = format!("{}@example.com", "a".repeat(1000));

    for destination in [
        json!(null),
        json!(""),
        json!("   "),
        json!("not-an-email"),
        json!("user@"),
        json!("@example.com"),
        json!("a\u{0}b@example.com"),
        json!(too_long),
        json!("5550109999"),
        json!("+0123456789"),
        json!("+1"),
        json!("+1234567890123456"),
        json!("+1 555 01O 9999"),
        json!("+١٥٥٥٠١٠٩٩٩٩"),
        json!(15550109999u64),
        json!(true),
        json!(["someone@example.com"]),
        json!({ "email": "someone@example.com" }),
    ] {
        let resp = app.post_json(REQUEST, &json!({ "destination": destination, "purpose": "register" })).await;
        assert_validation_error(resp, &destination.to_string()).await;
    }
    let resp = app.post_json(REQUEST, &json!({ "purpose": "register" })).await;
    assert_validation_error(resp, "no destination").await;
}

#[tokio::test]
async fn a_request_for_an_unknown_purpose_is_refused_and_sends_nothing() {
    let app = spawn_app().await;
    let email = random_email();

    // An explicit null is not the default purpose: the reference's
    // serializer answers "This field may not be null."
    for purpose in [json!(null), json!("signup"), json!("LOGIN"), json!(1), json!(true), json!(["login"]), json!({})] {
        let resp = app.post_json(REQUEST, &json!({ "destination": email, "purpose": purpose })).await;
        assert_validation_error(resp, &purpose.to_string()).await;
    }
    app.assert_nothing_sent_to(&email).await;
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));

    for path in [REQUEST, VERIFY] {
        for body in [
            "",
            "destination=someone%40example.com",
            "{",
            r#"{"destination": "someone@example.com""#,
            "[]",
            r#""someone@example.com""#,
            "null",
            "42",
            "true",
            deep.as_str(),
        ] {
            assert_validation_error(post_raw(&app, path, body.to_string()).await, &format!("{path} {body:.40}")).await;
        }
        let not_utf8 = b"{\"destination\": \"\xff\xfe@example.com\"}".to_vec();
        assert_validation_error(post_raw(&app, path, not_utf8).await, &format!("{path} invalid UTF-8")).await;
    }
}

/// A valid JSON request body padded with trailing whitespace to `len` bytes.
fn padded_request(destination: &str, len: usize) -> String {
    let body = json!({ "destination": destination, "purpose": "register" }).to_string();
    format!("{body:len$}")
}

#[tokio::test]
async fn a_body_over_16_kib_is_refused() {
    let app = spawn_app().await;
    let (fits, too_big) = (random_email(), random_email());

    let resp = post_raw(&app, REQUEST, padded_request(&fits, 16 * 1024)).await;
    assert_eq!(json_of(resp).await.0, 200, "exactly 16 KiB is allowed");
    app.code_sent_to(&fits).await;

    let resp = post_raw(&app, REQUEST, padded_request(&too_big, 16 * 1024 + 1)).await;
    assert_error(resp, 413, "PAYLOAD_TOO_LARGE").await;
    let resp = post_raw(&app, VERIFY, format!("{:16385}", "{}")).await;
    assert_error(resp, 413, "PAYLOAD_TOO_LARGE").await;
    app.assert_nothing_sent_to(&too_big).await;
}

#[tokio::test]
async fn a_malformed_verification_is_refused_without_spending_an_attempt() {
    let app = spawn_app().await;
    let otp = app.otp_for(&random_email(), "register").await;
    let (id, code) = (otp.id.as_str(), otp.code.as_str());
    let code_as_number: Value = code.parse::<u64>().unwrap().into();

    let mut bodies = vec![
        json!({ "otp_code": code }),
        json!({ "otp_id": id }),
        json!({ "otp_id": "not-a-uuid", "otp_code": code }),
        json!({ "otp_id": "", "otp_code": code }),
        json!({ "otp_id": 12345, "otp_code": code }),
        json!({ "otp_id": id, "otp_code": code_as_number }),
        json!({ "otp_id": id, "otp_code": null }),
    ];
    for bad_code in ["", "12345", "1234567", "١٢٣٤٥٦", "１２３４５６", "12345a", "abcdef", "123 456", "+12345"]
    {
        bodies.push(json!({ "otp_id": id, "otp_code": bad_code }));
    }
    for body in &bodies {
        assert_validation_error(app.post_json(VERIFY, body).await, &body.to_string()).await;
    }

    // All three attempts are still there: two wrong codes, then the right one.
    for _ in 0..2 {
        assert_invalid_otp(app.verify_otp(id, &wrong_code(code)).await, "Invalid OTP").await;
    }
    assert_eq!(json_of(app.verify_otp(id, code).await).await.0, 200);
}

const REGISTER: &str = "/api/auth/register/";
const REFRESH: &str = "/api/auth/token/refresh/";

/// POSTs `body` with this Content-Type, or none.
async fn post_as(app: &TestApp, path: &str, content_type: Option<&str>, body: String) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    app.send(request).await
}

/// A page on any site can make its visitors' browsers POST a `text/plain`,
/// form or multipart body cross-origin without a preflight (a CORS-simple
/// request); only `application/json` is a JSON body here, so such a page
/// cannot ask for codes to a victim.
#[tokio::test]
async fn a_json_body_sent_as_another_media_type_is_refused_with_415_and_sends_nothing() {
    let app = spawn_app().await;
    let email = random_email();
    let body = json!({ "destination": email, "purpose": "register" }).to_string();

    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("text/json"),
        Some("application/jsonp"),
        Some("application/problem+json"),
        Some("application/json-seq"),
        Some(""),
        None,
    ] {
        for path in [REQUEST, VERIFY, REGISTER, REFRESH] {
            let resp = post_as(&app, path, content_type, body.clone()).await;
            let message = assert_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE").await;
            assert!(message.contains("application/json"), "{path} {content_type:?}: {message}");
        }
    }
    // What a cross-site page would send, Origin and all.
    let forged = app.client.post(app.url(REQUEST)).header("origin", "https://evil.example").body(body.clone());
    assert_error(app.send(forged.header("content-type", "text/plain")).await, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    app.assert_nothing_sent_to(&email).await;
}

#[tokio::test]
async fn application_json_is_accepted_in_any_case_and_with_parameters() {
    let app = spawn_app().await;

    for content_type in
        ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8", " application/json "]
    {
        let email = random_email();
        let body = json!({ "destination": email, "purpose": "register" }).to_string();
        let (status, answer) = json_of(post_as(&app, REQUEST, Some(content_type), body).await).await;
        assert_eq!(status, 200, "{content_type:?}: {answer}");
        app.code_sent_to(&email).await;
    }
}

/// Raw HTTP/1.1 to the Worker: the start of a chunked JSON body (no
/// Content-Length), `padding` bytes of it, and never its end (no last
/// chunk). The answer's status, headers and body, if one comes within 10 s.
fn post_unfinished_chunked_body(
    address: &str,
    path: &str,
    client_ip: &str,
    padding: usize,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    use std::io::{BufRead, BufReader, Read, Write};

    let host = address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("could not connect to the Worker");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncf-connecting-ip: {client_ip}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    let mut chunk = |data: &[u8]| {
        request.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        request.extend_from_slice(data);
        request.extend_from_slice(b"\r\n");
    };
    chunk(br#"{"destination":"someone@example.com","pad":""#);
    for _ in 0..padding / 4096 {
        chunk(&[b'x'; 4096]);
    }
    stream.write_all(&request).unwrap();

    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .unwrap_or_else(|e| panic!("no answer within 10 s while the body was unfinished: {e}"));
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        panic!("not an HTTP status line: {status_line:?}");
    });
    let mut headers = reqwest::header::HeaderMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    let mut body = Vec::new();
    if let Some(length) = headers.get("content-length") {
        body.resize(length.to_str().unwrap().parse().unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        // Chunked: size lines, then data, until the zero-size chunk.
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut data = vec![0; size + 2];
            reader.read_exact(&mut data).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&data[..size]);
        }
    }
    (status, headers, body)
}

/// The body is read as it arrives and refused as soon as more than 16 KiB
/// have come, whatever it claims (a chunked body claims no length): a body
/// 64 KiB in and not finished, which a server reading bodies whole would
/// wait on for as long as the client liked, holding it all, is answered
/// 413 at once, and the Worker goes on serving.
#[tokio::test]
async fn a_chunked_body_past_16_kib_is_refused_with_413_before_it_ends() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();

    let (address, ip) = (app.address.clone(), app.client_ip.clone());
    let (status, headers, body) =
        tokio::task::spawn_blocking(move || post_unfinished_chunked_body(&address, REQUEST, &ip, 64 * 1024))
            .await
            .unwrap();

    crate::contract::check(&reqwest::Method::POST, REQUEST, status, &headers, &body)
        .unwrap_or_else(|violation| panic!("contract violation: {violation}"));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, answer["code"].as_str()), (413, Some("PAYLOAD_TOO_LARGE")), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "answered after {:?}", started.elapsed());
    let (status, health) = json_of(app.get("/healthz").await).await;
    assert_eq!(status, 200, "{health}");
}
