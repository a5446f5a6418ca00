//! Compatibility check against the OFFICIAL Trophy Node SDK (`@trophyso/node@1.0.42` from npm).
//!
//! Starts the real `kudos` binary on a free loopback port with a fresh data dir, then runs
//! `tests/sdk/node/check.mjs` with the SDK pointed at it (only the base URLs are switched:
//! `environment: { api: <url>/v1, admin: <url>/admin/v1 }`). The SDK is installed with npm
//! into `<target dir>/node-sdk` from `tests/sdk/node/package.json` the first time; a failed
//! install fails the test (it is never skipped). The script is copied next to that
//! `node_modules` and run from there, since ES modules do not resolve through `NODE_PATH`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{describe, manifest_dir, run, run_sdk_script, target_dir};

const SDK_PACKAGE: &str = "@trophyso/node";
const SDK_VERSION: &str = "1.0.42";
/// Global `fetch` (which the SDK uses when present) and top-level `await`.
const MIN_NODE_MAJOR: u32 = 18;

/// `node` from PATH, at least `MIN_NODE_MAJOR`.
fn check_node() {
    let out = run(Command::new("node").arg("--version"), "node --version");
    assert!(
        out.status.success(),
        "`node --version` failed; Node.js >= {MIN_NODE_MAJOR} is needed on PATH to run the \
         Trophy Node SDK check\n{}",
        describe(&out)
    );
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    assert!(
        major.is_some_and(|m| m >= MIN_NODE_MAJOR),
        "node {version} on PATH; the Trophy Node SDK check needs Node.js >= {MIN_NODE_MAJOR}"
    );
}

/// The `version` of the installed SDK package, if any.
fn installed_sdk_version(install: &Path) -> Option<String> {
    let manifest = install
        .join("node_modules")
        .join(SDK_PACKAGE)
        .join("package.json");
    let text = std::fs::read_to_string(manifest).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("version")?.as_str().map(str::to_string)
}

/// `<target dir>/node-sdk` with `@trophyso/node@1.0.42` installed and `check.mjs` copied in.
fn sdk_install_dir() -> PathBuf {
    check_node();
    let source = manifest_dir().join("tests/sdk/node");
    let install = target_dir().join("node-sdk");
    std::fs::create_dir_all(&install)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", install.display()));
    let copy = |name: &str| {
        let from = source.join(name);
        let to = install.join(name);
        std::fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
    };
    copy("package.json");
    copy("check.mjs");

    if installed_sdk_version(&install).as_deref() != Some(SDK_VERSION) {
        let npm_install = |log_flag: &str| {
            run(
                Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", log_flag])
                    .current_dir(&install),
                "npm install",
            )
        };
        let out = npm_install("--silent");
        if !out.status.success() {
            // `--silent` also hides npm's errors: run once more to show why it failed.
            let retry = npm_install("--loglevel=error");
            panic!(
                "npm install of {SDK_PACKAGE}@{SDK_VERSION} into {} failed\n{}\n\
                 --- npm install --loglevel=error (retry) ---\n{}",
                install.display(),
                describe(&out),
                describe(&retry)
            );
        }
        let got = installed_sdk_version(&install);
        assert_eq!(
            got.as_deref(),
            Some(SDK_VERSION),
            "npm install succeeded but {SDK_PACKAGE} {SDK_VERSION} is not in {}/node_modules\n{}",
            install.display(),
            describe(&out)
        );
    }
    install
}

#[test]
fn trophy_node_sdk_drives_kudos() {
    let install = sdk_install_dir();
    let mut cmd = Command::new("node");
    cmd.arg("check.mjs")
        .current_dir(&install)
        .env("NO_COLOR", "1")
        .env_remove("NODE_OPTIONS");
    run_sdk_script("Trophy Node SDK check", cmd, "NODE SDK CHECK OK");
}
