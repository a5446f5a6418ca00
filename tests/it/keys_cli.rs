//! `kudos keys …` on the data directory (SPEC §1.1.2): admin keys created, listed, rotated,
//! revoked and activated again, at most 3 active per environment, and what the server then
//! accepts.

use std::path::Path;
use std::process::Command;

use crate::binary::Binary;
use crate::support::KEY;

/// Runs `kudos keys <args>` on `dir`: (success, stdout, stderr).
fn keys(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kudos"))
        .arg("keys")
        .args(args)
        .env("KUDOS_DATA_DIR", dir)
        .env_remove("KUDOS_API_KEY")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run kudos keys");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The key printed at the end of a `create` or `rotate` line.
fn printed_key(stdout: &str) -> String {
    stdout.trim().rsplit(' ').next().expect("a key").to_string()
}

async fn status_with(server: &Binary, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/admin/v1/metrics", server.base))
        .header("X-API-KEY", key)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_keys_are_managed_from_the_cli_at_most_three_active() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The server stores its configured key (KEY), then stops: the directory is free.
    let mut server = Binary::start(dir.path(), &[]).await;
    let (ok, _, stderr) = keys(dir.path(), &["list"]);
    assert!(!ok, "the directory is locked while the server runs");
    assert!(stderr.contains("stop it first"), "{stderr}");
    server.kill9();

    let (ok, out, err) = keys(dir.path(), &["create"]);
    assert!(ok, "{err}");
    let second = printed_key(&out);
    let (ok, out, err) = keys(dir.path(), &["create"]);
    assert!(ok, "{err}");
    let third = printed_key(&out);
    let (ok, _, err) = keys(dir.path(), &["create"]);
    assert!(!ok, "a fourth active key is refused");
    assert!(err.contains("already has 3 active admin keys"), "{err}");

    let prefix = |k: &str| k.split('.').next().expect("prefix").to_string();
    let (ok, out, _) = keys(dir.path(), &["list"]);
    assert!(ok);
    for k in [KEY, &second, &third] {
        assert!(out.contains(&prefix(k)), "{out}");
        assert!(
            !out.contains(k.split('.').nth(1).expect("secret")),
            "never a secret: {out}"
        );
    }
    // Revoke one, rotate another; then a new key fits under the limit again.
    let (ok, _, err) = keys(dir.path(), &["revoke", &prefix(&second)]);
    assert!(ok, "{err}");
    let (ok, out, err) = keys(dir.path(), &["rotate", &prefix(&third)]);
    assert!(ok, "{err}");
    let rotated = printed_key(&out);
    assert_ne!(
        prefix(&rotated),
        prefix(&third),
        "rotation changes the prefix"
    );
    let (ok, _, err) = keys(dir.path(), &["rotate", "nosuchpr"]);
    assert!(!ok && err.contains("no admin key has the prefix"), "{err}");
    let (ok, out, _) = keys(dir.path(), &["list"]);
    assert!(ok && out.contains("revoked"), "{out}");
    assert!(
        !out.contains(&prefix(&third)),
        "a rotated-away prefix is not listed: {out}"
    );
    // Two active now: one more fits, and then activating the revoked one is refused.
    let (ok, out, err) = keys(dir.path(), &["create"]);
    assert!(ok, "{err}");
    let fourth = printed_key(&out);
    let (ok, _, err) = keys(dir.path(), &["activate", &prefix(&second)]);
    assert!(
        !ok && err.contains("already has 3 active admin keys"),
        "{err}"
    );
    let (ok, _, err) = keys(dir.path(), &["revoke", &prefix(&fourth)]);
    assert!(ok, "{err}");

    let server = Binary::start(dir.path(), &[]).await;
    assert_eq!(status_with(&server, KEY).await, 200);
    assert_eq!(status_with(&server, &second).await, 401, "revoked");
    assert_eq!(status_with(&server, &third).await, 401, "rotated away");
    assert_eq!(status_with(&server, &rotated).await, 200);
    drop(server);

    // Activated again: the same value works again.
    let (ok, _, err) = keys(dir.path(), &["activate", &prefix(&second)]);
    assert!(ok, "{err}");
    let server = Binary::start(dir.path(), &[]).await;
    assert_eq!(status_with(&server, &second).await, 200);
    assert_eq!(status_with(&server, &fourth).await, 401, "revoked");
    drop(server);

    // The configuration cannot undo a revoke or a rotation: the server refuses to start.
    for (configured, why) in [(&fourth, "was revoked"), (&third, "was rotated")] {
        let mut refused = Binary::spawn(dir.path(), &[("KUDOS_API_KEY", configured.as_str())]);
        let status = refused.wait_exit().await;
        assert!(!status.success(), "started with a key that {why}");
    }
    let (ok, out, _) = keys(dir.path(), &["list"]);
    assert!(ok);
    assert_eq!(out.matches("active").count(), 3, "{out}");

    // A key of its own rate (SPEC §1.4.2): the configured admin key, limited to 1/s.
    let (ok, out, err) = keys(dir.path(), &["limit", &prefix(KEY), "1"]);
    assert!(ok && out.contains("limited to 1 requests/s"), "{out}{err}");
    let (ok, _, err) = keys(dir.path(), &["limit", &prefix(KEY), "fast"]);
    assert!(!ok, "a rate must be a number: {err}");
    let server = Binary::start(dir.path(), &[]).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(status_with(&server, KEY).await);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        status_with(&server, &second).await,
        200,
        "other keys are not limited"
    );
    drop(server);
    let (ok, _, err) = keys(dir.path(), &["limit", &prefix(KEY), "default"]);
    assert!(ok, "{err}");
    let server = Binary::start(dir.path(), &[]).await;
    for _ in 0..20 {
        assert_eq!(status_with(&server, KEY).await, 200);
    }
}
