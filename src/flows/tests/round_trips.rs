//! Round trips each endpoint makes before it answers, counted by the
//! native ports: D1 batches, rate-limiter calls, provider calls, queue
//! sends, and the sequential depth (calls that wait on each other; calls
//! made side by side count once). Work after the answer (audit rows, a
//! queued login code) is not on the critical path and not counted.
//!
//! The table is printed (`cargo test --lib round_trips -- --nocapture`) and
//! is BENCHMARKS.md's "Round trips per endpoint". A change that adds a
//! round trip fails here until the expected figures are updated with it.

use super::{run, World};
use crate::domain::otp::Purpose;
use crate::flows::account;
use crate::flows::otp_verify::Verified;

const IP: &str = "203.0.113.20";

/// `(endpoint, db batches, limiter calls, provider calls, queue sends, depth)`.
type Figures = (&'static str, u32, u32, u32, u32, u32);

const EXPECTED: [Figures; 11] = [
    ("POST otp/request (login)", 0, 2, 0, 0, 1),
    ("POST otp/request (login, SMS)", 0, 4, 0, 0, 1),
    ("POST otp/request (register)", 1, 2, 1, 0, 3),
    ("POST otp/request (register, SMS)", 1, 6, 1, 0, 4),
    ("POST otp/verify (login)", 1, 2, 0, 0, 2),
    ("POST otp/verify (register)", 1, 2, 0, 0, 2),
    ("POST register", 1, 0, 0, 0, 1),
    ("POST token/refresh", 1, 0, 0, 0, 1),
    ("GET me", 1, 0, 0, 0, 1),
    ("GET sessions", 2, 0, 0, 0, 2),
    ("POST logout", 2, 0, 0, 0, 2),
];

/// Measures `work`: the calls it makes before it returns.
async fn measure<T>(w: &World, name: &'static str, work: impl std::future::Future<Output = T>) -> (Figures, T) {
    w.fakes.trips.reset();
    let out = work.await;
    let (db, limiter, provider, queue, depth) = w.fakes.trips.figures();
    // Then what the platform runs after the answer, uncounted.
    w.fakes.run_later().await;
    ((name, db, limiter, provider, queue, depth), out)
}

#[test]
fn round_trips_per_endpoint_before_the_answer() {
    run(async {
        let w = World::new();
        let user = w.seed_user("rt@example.com", "active");
        w.seed_user("+15550001111", "active");
        let mut table = Vec::new();

        let (f, otp) = measure(&w, EXPECTED[0].0, w.request_answer(IP, "rt@example.com", Purpose::Login)).await;
        table.push(f);
        w.deliver_queued().await;
        let code = w.last_code_to("rt@example.com");
        let (f, _) = measure(&w, EXPECTED[1].0, w.request_answer(IP, "+15550001111", Purpose::Login)).await;
        table.push(f);
        let (f, reg) = measure(&w, EXPECTED[2].0, w.request_answer(IP, "new-rt@example.com", Purpose::Register)).await;
        table.push(f);
        let reg_code = w.last_code_to("new-rt@example.com");
        let (f, _) = measure(&w, EXPECTED[3].0, w.request_answer(IP, "+15550002222", Purpose::Register)).await;
        table.push(f);

        let (f, login) = measure(&w, EXPECTED[4].0, w.verify(IP, &otp.unwrap().otp_id, &code)).await;
        table.push(f);
        let Ok(Verified::Login(login)) = login else { panic!("no login") };
        assert_eq!(login.user.id, user);
        let (f, token) = measure(&w, EXPECTED[5].0, w.verify(IP, &reg.unwrap().otp_id, &reg_code)).await;
        table.push(f);
        let Ok(Verified::Register { verification_token, .. }) = token else { panic!("no register token") };
        let (f, registered) = measure(&w, EXPECTED[6].0, w.register(IP, &verification_token, "rt_new")).await;
        table.push(f);
        registered.unwrap();

        let app = w.app(IP);
        let (f, pair) = measure(&w, EXPECTED[7].0, crate::flows::refresh::refresh(&app, &login.refresh)).await;
        table.push(f);
        let bearer = format!("Bearer {}", pair.unwrap().access);
        let (f, who) = measure(&w, EXPECTED[8].0, account::authenticate(&app, Some(&bearer))).await;
        table.push(f);
        let who = who.unwrap();
        let (f, listed) = measure(&w, EXPECTED[9].0, async {
            let who = account::authenticate(&app, Some(&bearer)).await.unwrap();
            account::sessions(&app, &who).await
        })
        .await;
        table.push(f);
        assert_eq!(listed.unwrap().sessions.len(), 1);
        let (f, out) = measure(&w, EXPECTED[10].0, async {
            let who = account::authenticate(&app, Some(&bearer)).await.unwrap();
            account::logout(&app, &who).await
        })
        .await;
        table.push(f);
        out.unwrap();
        assert_eq!(who.user_id, user);

        println!("| endpoint | D1 batches | limiter calls | provider calls | queue sends | sequential depth |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for (name, db, limiter, provider, queue, depth) in &table {
            println!("| {name} | {db} | {limiter} | {provider} | {queue} | {depth} |");
        }
        assert_eq!(
            table, EXPECTED,
            "update EXPECTED (and BENCHMARKS.md) if a round trip was added or removed on purpose"
        );
    })
}
