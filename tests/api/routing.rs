use crate::helpers::spawn_app;

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let app = spawn_app().await;

    for path in [
        "/nope",
        "/api/auth/otp/",
        "/healthz/extra",
        "/api/auth/sessions/a/b",
        "/api/admin/",
        "/api/admin/users//disable/",
        "/api/admin/users/67e55044-10b1-426f-9247-bb680e5fe0c8/sessions/revoke/",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND", "{path}");
    }
}

#[tokio::test]
async fn wrong_methods_get_a_json_405_with_allow() {
    let app = spawn_app().await;

    let resp = app.post_json("/healthz", &serde_json::json!({})).await;

    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn paths_work_with_and_without_the_trailing_slash() {
    let app = spawn_app().await;

    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/healthz/").await.status(), 200);
}

/// The runtime passes methods such as PROPFIND through; they must not be
/// served as GET.
#[tokio::test]
async fn unknown_methods_get_a_json_405_not_the_get_answer() {
    let app = spawn_app().await;

    for (method, path, allow) in [
        ("PROPFIND", "/healthz", "GET"),
        ("QUERY", "/api/auth/me/", "GET, DELETE, PATCH"),
        ("PATCH", "/api/auth/otp/request/", "POST"),
        ("POST", "/api/admin/users/", "GET"),
        ("GET", "/api/admin/users/67e55044-10b1-426f-9247-bb680e5fe0c8/disable/", "POST"),
        ("POST", "/api/admin/users/67e55044-10b1-426f-9247-bb680e5fe0c8/sessions/", "DELETE"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = app.send(app.client.request(method.clone(), app.url(path))).await;
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], allow);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    }
}
