//! The contract that cannot drift: `src/http/assets/openapi.json` (served at
//! `/openapi.json`) is checked against every response the black-box suite
//! receives. `TestApp::send` hands each response to [`checked`], which finds
//! the operation (the request's path against the document's path templates,
//! with or without the trailing slash, and its method), the response entry
//! for the status (or `default`), and checks the content type, the JSON body
//! against the entry's schema, and the declared headers; any mismatch, or an
//! undeclared status, fails the test that made the request, naming the
//! endpoint, the status and the violation.
//!
//! Document-level rules, as the document's description states them: a path
//! not in the document must answer `#/components/responses/NotFound`; a
//! method not listed for a path `#/components/responses/MethodNotAllowed`,
//! whose `Allow` lists exactly the path's methods; HEAD is checked as GET,
//! without a body. An OPTIONS answer's `Allow` lists the path's methods too.
//!
//! OpenAPI 3.1 schemas are JSON Schema 2020-12: each schema is compiled once,
//! as a root holding the schema and the document's `components`, so its
//! internal `$ref`s resolve; formats (uuid, date-time, email) are asserted.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, ResponseBuilderExt};
use serde_json::{json, Value};

use crate::helpers::{project_root, spawn_app};

/// The document, exactly as the Worker embeds it.
const DOCUMENT: &str = include_str!("../../src/http/assets/openapi.json");

/// Answered by `wrangler dev --test-scheduled` itself (it runs the cron
/// handler), never by the Worker's fetch handler: not part of the API.
const WRANGLER_PATHS: [&str; 1] = ["/__scheduled"];

/// Operation keys of an OpenAPI path item.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

struct Contract {
    doc: Value,
    /// Compiled validators, by the JSON pointer of their schema.
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| Contract {
        doc: serde_json::from_str(DOCUMENT).expect("src/http/assets/openapi.json is not JSON"),
        validators: Default::default(),
    })
}

/// Reads the response, checks it against the document (panicking with the
/// violation), and gives the test an identical response to read.
pub async fn checked(method: &Method, response: reqwest::Response) -> reqwest::Response {
    let (status, version, headers, url) =
        (response.status(), response.version(), response.headers().clone(), response.url().clone());
    let body = response.bytes().await.expect("could not read the Worker's answer");
    if let Err(violation) = check(method, url.path(), status.as_u16(), &headers, &body) {
        panic!(
            "contract violation (src/http/assets/openapi.json): {method} {} answered {status}: {violation}\n\
             headers: {headers:?}\nbody: {}",
            url.path(),
            String::from_utf8_lossy(&body[..body.len().min(2000)]),
        );
    }
    let mut rebuilt = http::Response::builder().status(status).version(version).url(url);
    *rebuilt.headers_mut().expect("a valid response") = headers;
    reqwest::Response::from(rebuilt.body(body).expect("a valid response"))
}

/// Checks one response; `Err` says what does not match the document.
pub fn check(method: &Method, path: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    if WRANGLER_PATHS.contains(&path) {
        return Ok(());
    }
    let c = contract();
    let Some(template) = c.find_path(path) else {
        // Outside the document: the document-level 404.
        if status != 404 {
            return Err(format!("the path is not in the document, so the answer must be 404, not {status}"));
        }
        return c.check_response("#/components/responses/NotFound", headers, *method != Method::HEAD, body);
    };
    let item = &c.doc["paths"][template.as_str()];
    let declared = declared_methods(item);
    let head = *method == Method::HEAD;
    let key = if head { "get".to_string() } else { method.as_str().to_ascii_lowercase() };
    if item.get(&key).is_none() {
        if status != 405 {
            return Err(format!("{template} does not list {method} (only {declared:?}), so the answer must be 405"));
        }
        c.check_response("#/components/responses/MethodNotAllowed", headers, !head, body)?;
        return allow_lists(headers, &declared, false);
    }
    let responses = format!("#/paths/{}/{key}/responses", escape(&template));
    let entry = [status.to_string(), "default".to_string()]
        .into_iter()
        .find(|s| c.at(&responses).get(s).is_some())
        .ok_or_else(|| {
            let listed: Vec<&String> = c.at(&responses).as_object().map(|m| m.keys().collect()).unwrap_or_default();
            format!("status {status} is not declared for {} {template} (declared: {listed:?})", key.to_uppercase())
        })?;
    c.check_response(&format!("{responses}/{entry}"), headers, !head, body)?;
    if key == "options" && status == 204 {
        allow_lists(headers, &declared, true)?;
    }
    Ok(())
}

impl Contract {
    /// The value at a local reference (`#/a/b`).
    fn at(&self, reference: &str) -> &Value {
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("not a local reference: {reference}"));
        self.doc.pointer(pointer).unwrap_or_else(|| panic!("src/http/assets/openapi.json has nothing at {reference}"))
    }

    /// Follows `$ref`s: the reference of the object finally reached, and the object.
    fn resolve(&self, mut reference: String) -> (String, &Value) {
        loop {
            let value = self.at(&reference);
            match value.get("$ref").and_then(Value::as_str) {
                Some(target) => reference = target.to_string(),
                None => return (reference, value),
            }
        }
    }

    /// The document's path template that `path` matches: segment by segment,
    /// ignoring trailing slashes (as the Worker's router does), a `{param}`
    /// matching one non-empty segment; literal paths first.
    fn find_path(&self, path: &str) -> Option<String> {
        let path = trim_slash(path);
        let mut templates: Vec<&String> = self.doc["paths"].as_object()?.keys().collect();
        templates.sort_by_key(|t| t.matches('{').count());
        templates.into_iter().find(|t| segments_match(trim_slash(t), path)).cloned()
    }

    /// The validator of the schema at `reference`, compiled once.
    fn validator(&self, reference: &str) -> Arc<jsonschema::Validator> {
        if let Some(v) = self.validators.lock().unwrap().get(reference) {
            return v.clone();
        }
        // The schema with the document's components beside it, so the
        // `#/components/...` references inside resolve.
        let mut root = match self.at(reference) {
            Value::Object(schema) => schema.clone(),
            Value::Bool(b) => return self.compile(reference, json!(b)),
            other => panic!("{reference} is not a schema: {other}"),
        };
        root.insert("components".into(), self.doc["components"].clone());
        self.compile(reference, Value::Object(root))
    }

    fn compile(&self, reference: &str, root: Value) -> Arc<jsonschema::Validator> {
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema at {reference} does not compile: {e}"));
        let validator = Arc::new(validator);
        self.validators.lock().unwrap().insert(reference.to_string(), validator.clone());
        validator
    }

    /// Violations of `instance` against the schema at `reference`.
    fn validate(&self, reference: &str, instance: &Value) -> Result<(), String> {
        let validator = self.validator(reference);
        let errors: Vec<String> =
            validator.iter_errors(instance).take(5).map(|e| format!("at '{}': {e}", e.instance_path())).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("violates {reference}: {}", errors.join("; ")))
        }
    }

    /// A response against the Response Object at `reference`: its headers,
    /// its content type and (with `with_body`) its body.
    fn check_response(&self, reference: &str, headers: &HeaderMap, with_body: bool, body: &[u8]) -> Result<(), String> {
        let (reference, response) = self.resolve(reference.to_string());
        if let Some(declared) = response.get("headers").and_then(Value::as_object) {
            for name in declared.keys() {
                let (header_ref, header) = self.resolve(format!("{reference}/headers/{}", escape(name)));
                let required = header["required"].as_bool().unwrap_or(false);
                let Some(value) = headers.get(name.as_str()) else {
                    if required {
                        return Err(format!("the required header {name} is missing"));
                    }
                    continue;
                };
                let value = value.to_str().map_err(|_| format!("the header {name} is not visible ASCII"))?;
                let schema = header.get("schema").ok_or_else(|| format!("{header_ref} has no schema"))?;
                // Header values are text; a number schema means a number's digits.
                let instance = match schema["type"].as_str() {
                    Some("integer") | Some("number") => serde_json::from_str::<Value>(value.trim())
                        .ok()
                        .filter(Value::is_number)
                        .ok_or_else(|| format!("the header {name} is not a number: {value:?}"))?,
                    _ => Value::String(value.to_string()),
                };
                self.validate(&format!("{header_ref}/schema"), &instance)
                    .map_err(|e| format!("the header {name}: {value:?} {e}"))?;
            }
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!("{reference} declares no content, yet there is a body"))
            };
        };
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !content.contains_key(&media) {
            let listed: Vec<&String> = content.keys().collect();
            return Err(format!("Content-Type {content_type:?} is not declared (declared: {listed:?})"));
        }
        if !with_body {
            return Ok(());
        }
        let schema_ref = format!("{reference}/content/{}/schema", escape(&media));
        if content[&media].get("schema").is_none() {
            return Ok(());
        }
        let instance = if media == "application/json" || media.ends_with("+json") {
            serde_json::from_slice::<Value>(body).map_err(|e| format!("the body is not JSON ({e})"))?
        } else {
            Value::String(String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8 text".to_string())?)
        };
        self.validate(&schema_ref, &instance).map_err(|e| format!("the body {e}"))
    }
}

/// Checks a webhook as its receiver got it against the document's
/// `webhooks` entry for its `type`: the required `webhook-*` headers and
/// their schemas, and the JSON body against the request body's schema.
pub fn check_webhook(kind: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let c = contract();
    let op = format!("#/webhooks/{}/post", escape(kind));
    if c.doc.pointer(&op[1..]).is_none() {
        return Err(format!("the document has no webhook {kind}"));
    }
    let parameters = c.at(&format!("{op}/parameters")).as_array().cloned().unwrap_or_default();
    for i in 0..parameters.len() {
        let (reference, parameter) = c.resolve(format!("{op}/parameters/{i}"));
        let name = parameter["name"].as_str().unwrap_or_default();
        let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            return Err(format!("the required header {name} is missing"));
        };
        let instance = match parameter["schema"]["type"].as_str() {
            Some("integer") => serde_json::from_str::<Value>(value).map_err(|_| format!("{name} is not a number"))?,
            _ => Value::String(value.to_string()),
        };
        c.validate(&format!("{reference}/schema"), &instance).map_err(|e| format!("the header {name}: {e}"))?;
    }
    let instance = serde_json::from_slice::<Value>(body).map_err(|e| format!("the body is not JSON ({e})"))?;
    c.validate(&format!("{op}/requestBody/content/application~1json/schema"), &instance)
        .map_err(|e| format!("the body {e}"))
}

/// The document's webhooks: each type and its example body.
pub fn webhook_examples() -> Vec<(String, Value)> {
    let hooks = contract().doc["webhooks"].as_object().cloned().unwrap_or_default();
    hooks
        .into_iter()
        .map(|(kind, item)| {
            let example = item["post"]["requestBody"]["content"]["application/json"]["example"].clone();
            (kind, example)
        })
        .collect()
}

/// The methods a path item lists, upper-case, OPTIONS last if listed.
fn declared_methods(item: &Value) -> Vec<String> {
    METHODS.iter().filter(|m| item.get(**m).is_some()).map(|m| m.to_uppercase()).collect()
}

/// `Allow` names exactly the path's methods (and OPTIONS when `with_options`).
fn allow_lists(headers: &HeaderMap, declared: &[String], with_options: bool) -> Result<(), String> {
    let allow = headers.get("allow").and_then(|v| v.to_str().ok()).ok_or("the Allow header is missing")?;
    let got: BTreeSet<String> = allow.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect();
    let want: BTreeSet<String> = declared.iter().filter(|m| with_options || *m != "OPTIONS").cloned().collect();
    if got == want {
        Ok(())
    } else {
        Err(format!("Allow is {allow:?}, but the document lists {want:?} for this path"))
    }
}

fn trim_slash(path: &str) -> &str {
    if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    }
}

fn segments_match(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| if t.starts_with('{') && t.ends_with('}') { !p.is_empty() } else { t == p })
}

/// A JSON Pointer token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

// ---------------------------------------------------------------------------
// The document itself
// ---------------------------------------------------------------------------

/// The routes of `route_of` in src/http/mod.rs: (path, methods), read from
/// its match arms, so a route added there and not here fails.
fn router_routes() -> Vec<(String, Vec<String>)> {
    let source = std::fs::read_to_string(project_root().join("src/http/mod.rs")).unwrap();
    let start = source.find("fn route_of(").expect("src/http/mod.rs has no route_of");
    let end = start + source[start..].find("\n}\n").expect("route_of has no end");
    let (mut routes, mut prefix) = (Vec::new(), None::<String>);
    for line in source[start..end].lines().map(str::trim) {
        // `"/path" => (Route::X, "GET"),`
        if let Some((path, rest)) = line.strip_prefix('"').and_then(|l| l.split_once("\" => (Route::")) {
            let methods = rest.split('"').nth(1).expect("a route without methods");
            routes.push((path.to_string(), methods.split(", ").map(str::to_string).collect()));
        }
        // `match path.strip_prefix("/api/auth/sessions/") {` then
        // `Some(id) if ... => (Route::Session(id...), "DELETE")`: the path
        // template `/api/auth/sessions/{id}`, named by the binding; and
        // `Some((id, "disable")) => (Route::Admin(...), "POST")`: the
        // template `{prefix}{id}/disable` (`""`: `{prefix}{id}`).
        if let Some(found) = line.split("strip_prefix(\"").nth(1).and_then(|r| r.split('"').next()) {
            prefix = Some(found.to_string());
        }
        if let Some(binding) = line.strip_prefix("Some(").filter(|_| line.contains("=> (Route::")) {
            let prefix = prefix.as_deref().expect("a Some(..) arm before any strip_prefix");
            let template = match binding.strip_prefix('(') {
                Some(pair) => {
                    let (name, below) = pair.split_once(", \"").expect("Some((name, \"below\"))");
                    let below = below.split('"').next().unwrap();
                    if below.is_empty() {
                        format!("{prefix}{{{name}}}")
                    } else {
                        format!("{prefix}{{{name}}}/{below}")
                    }
                }
                None => format!("{prefix}{{{}}}", binding.split(')').next().unwrap()),
            };
            let methods = line.rsplit('"').nth(1).expect("a prefix route without methods");
            routes.push((template, methods.split(", ").map(str::to_string).collect()));
        }
    }
    routes
}

/// The Python tools in target/venv (scripts/bootstrap-python.sh), installed
/// once per test process; their `bin` directory.
pub fn python_tools() -> std::path::PathBuf {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let status = Command::new(project_root().join("scripts/bootstrap-python.sh"))
            .status()
            .expect("could not run scripts/bootstrap-python.sh");
        assert!(status.success(), "scripts/bootstrap-python.sh failed");
    });
    project_root().join("target/venv/bin")
}

#[test]
fn the_document_is_valid_openapi_3_1_and_lists_every_route() {
    // The OpenAPI 3.1 specification's own schema, through its reference validator.
    let root = project_root();
    let out = Command::new(python_tools().join("openapi-spec-validator"))
        .arg(root.join("src/http/assets/openapi.json"))
        .output()
        .expect("could not run openapi-spec-validator");
    assert!(
        out.status.success(),
        "src/http/assets/openapi.json is not a valid OpenAPI 3.1 document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let c = contract();
    assert_eq!(c.doc["openapi"], "3.1.0");
    // Every route the router has is in the document, with the same methods
    // (and OPTIONS, which every known path answers) ...
    let routes = router_routes();
    assert!(routes.len() >= 23, "read too few routes from src/http/mod.rs: {routes:?}");
    let mut covered = BTreeSet::new();
    for (path, methods) in &routes {
        let template = c.find_path(path).unwrap_or_else(|| panic!("the route {path} is not in the document"));
        assert_eq!(trim_slash(&template), trim_slash(path), "{path} matched another template");
        let mut want: BTreeSet<String> = methods.iter().cloned().collect();
        want.insert("OPTIONS".into());
        let declared: BTreeSet<String> = declared_methods(&c.doc["paths"][template.as_str()]).into_iter().collect();
        assert_eq!(declared, want, "methods of {path}");
        covered.insert(template);
    }
    // ... and the document lists nothing else.
    let listed: BTreeSet<String> = c.doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(listed, covered, "paths in the document that the router does not have");

    // Every schema compiles (its $refs resolve, it is valid JSON Schema
    // 2020-12), and every operation declares what every route may answer.
    let mut schemas = 0;
    for (template, item) in c.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap().iter().filter(|(k, _)| METHODS.contains(&k.as_str())) {
            let responses = op["responses"].as_object().unwrap();
            let codes: BTreeSet<&str> = responses.keys().map(String::as_str).collect();
            assert!(codes.contains("404"), "{method} {template} does not declare 404");
            if method != "options" {
                assert!(codes.contains("405"), "{method} {template} does not declare 405");
            }
            if method == "post" && op.get("requestBody").is_some() {
                assert!(codes.contains("413"), "{method} {template} reads a body but does not declare 413");
                let json = op["requestBody"]["content"].get("application/json").is_some();
                assert_eq!(codes.contains("415"), json, "{method} {template}: 415 if and only if it reads JSON");
            }
            if op.get("security").is_some() {
                assert!(codes.contains("401"), "{method} {template} is authenticated but does not declare 401");
            }
            for status in responses.keys() {
                let (reference, response) =
                    c.resolve(format!("#/paths/{}/{method}/responses/{status}", escape(template)));
                for media in response["content"].as_object().into_iter().flat_map(|m| m.keys()) {
                    c.validator(&format!("{reference}/content/{}/schema", escape(media)));
                    schemas += 1;
                }
                if status == "429" || (status == "503" && template != "/healthz") {
                    let declared = response["headers"].get("Retry-After").is_some();
                    assert!(declared, "{method} {template} {status} without Retry-After");
                }
                if status == "401" && op.get("security").is_some() {
                    let declared = response["headers"].get("WWW-Authenticate").is_some();
                    assert!(declared, "{method} {template} 401 without WWW-Authenticate");
                }
            }
        }
    }
    for name in c.doc["components"]["schemas"].as_object().unwrap().keys() {
        c.validator(&format!("#/components/schemas/{name}"));
    }
    assert!(schemas > 50, "compiled only {schemas} response schemas");

    // Examples are what the schemas allow, and links name real operations.
    let operation_ids: BTreeSet<&str> = c.doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let mut examples = 0;
    for (template, item) in c.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap().iter().filter(|(k, _)| METHODS.contains(&k.as_str())) {
            let op_ref = format!("#/paths/{}/{method}", escape(template));
            let mut media_refs: Vec<String> = Vec::new();
            for media in op["requestBody"]["content"].as_object().into_iter().flat_map(|m| m.keys()) {
                media_refs.push(format!("{op_ref}/requestBody/content/{}", escape(media)));
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                for media in response["content"].as_object().into_iter().flat_map(|m| m.keys()) {
                    media_refs.push(format!("{op_ref}/responses/{status}/content/{}", escape(media)));
                }
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or_default();
                    let known = operation_ids.contains(target);
                    assert!(known, "the link {name} of {method} {template} {status} names no operation");
                }
            }
            for media_ref in media_refs {
                let media = c.at(&media_ref);
                let mut values: Vec<&Value> = media.get("example").into_iter().collect();
                values.extend(media["examples"].as_object().into_iter().flat_map(|e| e.values()).map(|e| &e["value"]));
                for value in values {
                    c.validate(&format!("{media_ref}/schema"), value).unwrap_or_else(|e| panic!("an example {e}"));
                    examples += 1;
                }
            }
        }
    }
    assert!(examples >= 5, "found only {examples} examples");
}

#[test]
fn the_check_catches_what_the_document_does_not_allow() {
    let json_headers = |extra: &[(&'static str, &str)]| {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        for (k, v) in extra {
            h.insert(*k, v.parse().unwrap());
        }
        h
    };
    let health = br#"{"status":"ok","config":{"ok":true},"d1":{"ok":true,"latency_ms":3},
                      "durable_object":{"ok":true,"latency_ms":5}}"#;
    let h = json_headers(&[]);
    check(&Method::GET, "/healthz", 200, &h, health).unwrap();
    check(&Method::GET, "/healthz/", 200, &h, health).unwrap();
    check(&Method::HEAD, "/healthz", 200, &h, b"").unwrap();

    let violation = |result: Result<(), String>, needle: &str| {
        let e = result.expect_err("a violation passed the check");
        assert!(e.contains(needle), "{e:?} does not mention {needle:?}");
    };
    // A missing required key, a wrong status, an undeclared status, a wrong content type.
    violation(check(&Method::GET, "/healthz", 200, &h, br#"{"status":"ok","config":{"ok":true}}"#), "d1");
    violation(check(&Method::GET, "/healthz", 503, &h, health), "degraded");
    violation(check(&Method::GET, "/healthz", 418, &h, health), "418 is not declared");
    let text = {
        let mut t = HeaderMap::new();
        t.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        t
    };
    violation(check(&Method::GET, "/healthz", 200, &text, health), "Content-Type");
    // An error code that this status cannot carry, and an undocumented field.
    let error = |code: &str| format!(r#"{{"code":"{code}","message":"m"}}"#).into_bytes();
    violation(check(&Method::POST, "/api/auth/otp/verify/", 400, &h, &error("RATE_LIMIT")), "code");
    check(&Method::POST, "/api/auth/otp/verify/", 400, &h, &error("INVALID_OTP")).unwrap();
    violation(
        check(&Method::POST, "/api/auth/otp/verify", 400, &h, br#"{"code":"INVALID_OTP","message":"m","x":1}"#),
        "x",
    );
    // 429 needs Retry-After (an integer) and retry_after.
    let limited = br#"{"code":"RATE_LIMIT","message":"m","retry_after":30}"#;
    violation(check(&Method::POST, "/api/auth/otp/verify/", 429, &h, limited), "Retry-After");
    let not_seconds = json_headers(&[("retry-after", "soon")]);
    violation(check(&Method::POST, "/api/auth/otp/verify/", 429, &not_seconds, limited), "Retry-After");
    check(&Method::POST, "/api/auth/otp/verify/", 429, &json_headers(&[("retry-after", "30")]), limited).unwrap();
    // 401 on a bearer endpoint needs WWW-Authenticate.
    let unauthenticated = br#"{"code":"NOT_AUTHENTICATED","message":"m"}"#;
    violation(check(&Method::GET, "/api/auth/me/", 401, &h, unauthenticated), "WWW-Authenticate");
    check(&Method::GET, "/api/auth/me", 401, &json_headers(&[("www-authenticate", "Bearer")]), unauthenticated)
        .unwrap();
    // Templated paths; unknown paths and methods follow the document-level rules.
    let revoked = br#"{"message":"Session revoked"}"#;
    check(&Method::DELETE, "/api/auth/sessions/67e55044-10b1-426f-9247-bb680e5fe0c8/", 200, &h, revoked).unwrap();
    let not_found = error("NOT_FOUND");
    check(&Method::GET, "/nope", 404, &h, &not_found).unwrap();
    violation(check(&Method::GET, "/nope", 200, &h, health), "not in the document");
    violation(check(&Method::GET, "/nope", 404, &h, &error("SESSION_NOT_FOUND")), "code");
    let wrong_method = error("METHOD_NOT_ALLOWED");
    check(&Method::POST, "/healthz", 405, &json_headers(&[("allow", "GET")]), &wrong_method).unwrap();
    violation(check(&Method::POST, "/healthz", 405, &json_headers(&[("allow", "GET, POST")]), &wrong_method), "Allow");
    violation(check(&Method::POST, "/healthz", 200, &h, health), "405");
    let preflight = |allow: &str| {
        let mut h = HeaderMap::new();
        h.insert("allow", allow.parse().unwrap());
        h
    };
    check(&Method::OPTIONS, "/api/auth/logout/", 204, &preflight("POST, OPTIONS"), b"").unwrap();
    violation(check(&Method::OPTIONS, "/api/auth/logout/", 204, &preflight("GET, OPTIONS"), b""), "Allow");
}

#[tokio::test]
async fn openapi_json_is_the_document_in_the_repository_byte_for_byte() {
    let app = spawn_app().await;

    let resp = app.get("/openapi.json").await;

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json; charset=utf-8");
    let served = resp.bytes().await.unwrap();
    let in_repo = std::fs::read(project_root().join("src/http/assets/openapi.json")).unwrap();
    assert!(
        served[..] == in_repo[..],
        "GET /openapi.json differs from src/http/assets/openapi.json (rebuild the Worker?)"
    );
}
