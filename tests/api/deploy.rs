use crate::helpers::{build_once, wrangler};

/// The bundle `wrangler deploy` would upload packages without errors.
#[tokio::test]
async fn deploy_bundle_packages() {
    tokio::task::spawn_blocking(|| {
        build_once();
        let out = std::env::temp_dir().join(format!("otp-edge-dry-run-{}", std::process::id()));
        let output = wrangler()
            .args(["deploy", "--dry-run", "--outdir"])
            .arg(&out)
            .output()
            .expect("could not run wrangler deploy --dry-run");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let files: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        std::fs::remove_dir_all(&out).ok();
        assert!(files.iter().any(|f| f.ends_with(".wasm")), "{files:?}");
        assert!(files.iter().any(|f| f == "index.js"), "{files:?}");
        // The bindings the service needs are in the bundle's manifest.
        for binding in ["RATE_LIMITER", "DB", "DELIVERY_QUEUE"] {
            assert!(stdout.contains(binding), "no {binding} binding: {stdout}");
        }
    })
    .await
    .unwrap();
}
