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
        // The budget: at most 400 KB of wasm, gzipped (the deployed bundle,
        // without function names; scripts/build.sh).
        let wasm = crate::helpers::project_root().join("build/index_bg.wasm");
        let gzip = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -9 -c '{}' | wc -c", wasm.display()))
            .output()
            .expect("gzip");
        let gzipped: u64 = String::from_utf8_lossy(&gzip.stdout).trim().parse().expect("a byte count");
        assert!(gzipped < 400_000, "the gzipped wasm is {gzipped} bytes, over the 400 KB budget");
        // The bindings the service needs are in the bundle's manifest.
        for binding in ["RATE_LIMITER", "DB", "DELIVERY_QUEUE", "WEBHOOK_QUEUE"] {
            assert!(stdout.contains(binding), "no {binding} binding: {stdout}");
        }
    })
    .await
    .unwrap();
}

/// `wrangler deploy --env staging` (CI's deploy of main) packages the same
/// bundle with staging's own D1 database and queues, and wrangler finds
/// nothing missing from the environment (it inherits no binding or var).
#[tokio::test]
async fn the_staging_environment_packages_with_its_own_resources() {
    tokio::task::spawn_blocking(|| {
        build_once();
        let out = std::env::temp_dir().join(format!("otp-edge-dry-run-staging-{}", std::process::id()));
        let output = wrangler()
            .args(["deploy", "--dry-run", "--env", "staging", "--outdir"])
            .arg(&out)
            .output()
            .expect("could not run wrangler deploy --dry-run --env staging");
        std::fs::remove_dir_all(&out).ok();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(!format!("{stdout}{stderr}").contains("WARNING"), "{stdout}\n{stderr}");
        for binding in [
            "env.DB (otp-edge-staging)",
            "env.DELIVERY_QUEUE (otp-edge-staging-delivery)",
            "env.WEBHOOK_QUEUE (otp-edge-staging-webhooks)",
            "env.RATE_LIMITER (RateLimiter)",
            "env.ENVIRONMENT (\"production\")",
            "env.JWT_ISSUER (\"https://auth-staging.example.com\")",
        ] {
            assert!(stdout.contains(binding), "no {binding}: {stdout}");
        }
    })
    .await
    .unwrap();
}

/// The benchmark's server (`bench/serve.mjs`: the release bundle on
/// Miniflare, with every migration applied by its own SQL splitter) starts:
/// `make bench`, `make timing` and `make profile` rest on it, and nothing
/// else in `make test` runs it (a trigger's body once broke its splitter).
#[tokio::test]
async fn the_benchmark_server_applies_every_migration_and_starts() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    tokio::task::spawn_blocking(|| {
        build_once();
        let root = crate::helpers::project_root();
        let port = crate::helpers::free_port().to_string();
        let mut child = std::process::Command::new(root.join("node_modules/.bin/node"))
            .args(["bench/serve.mjs", "--script", "build/index.js", "--port", &port, "--migrations", "migrations"])
            .current_dir(&root)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("could not start bench/serve.mjs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let first = std::io::BufReader::new(stdout).lines().next();
            let _ = tx.send(first);
        });
        let first = rx.recv_timeout(std::time::Duration::from_secs(90));
        // serve.mjs disposes of Miniflare (and its workerd) on SIGTERM: the whole group.
        let group = format!("-{}", child.id());
        let _ = std::process::Command::new("kill").args(["-s", "TERM", "--", &group]).status();
        let output = child.wait_with_output().expect("serve.mjs");
        let line = match first {
            Ok(Some(Ok(line))) => line,
            other => panic!("serve.mjs printed no line ({other:?}): {}", String::from_utf8_lossy(&output.stderr)),
        };
        assert!(line.starts_with("{\"ready\":"), "{line}\n{}", String::from_utf8_lossy(&output.stderr));
    })
    .await
    .unwrap();
}
