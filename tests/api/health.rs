use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_reports_d1_and_the_durable_object_up() {
    let app = spawn_app().await;

    let resp = app.get("/healthz").await;

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json; charset=utf-8");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["config"]["ok"], true);
    assert_eq!(body["d1"]["ok"], true, "{body}");
    assert_eq!(body["durable_object"]["ok"], true, "{body}");
    assert!(body["d1"]["latency_ms"].is_u64());
    assert!(body["durable_object"]["latency_ms"].is_u64());
}
