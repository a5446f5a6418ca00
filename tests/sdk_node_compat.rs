//! Compatibility check against the OFFICIAL Trophy Node SDK (`@trophyso/node@1.0.42` from npm).
//!
//! Starts the real `kudos` binary on a free loopback port with a fresh data dir, then runs
//! `tests/sdk/node/check.mjs` with the SDK pointed at it (only the base URLs are switched:
//! `environment: { api: <url>/v1, admin: <url>/admin/v1 }`). The SDK is installed with npm
//! into `<target dir>/node-sdk` from `tests/sdk/node/package.json` the first time; a failed
//! install fails the test (it is never skipped). The script is copied next to that
//! `node_modules` and run from there, since ES modules do not resolve through `NODE_PATH`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SDK_PACKAGE: &str = "@trophyso/node";
const SDK_VERSION: &str = "1.0.42";
/// Global `fetch` (which the SDK uses when present) and top-level `await`.
const MIN_NODE_MAJOR: u32 = 18;
const API_KEY: &str = "sdkcheck.0123456789abcdef";
const READY_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// The whole SDK script; it makes about a hundred requests to a local server.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                manifest_dir().join(dir)
            }
        }
        _ => manifest_dir().join("target"),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"))
}

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

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Kills and reaps a child process on every path out of the test.
struct ChildGuard {
    child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_file(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// One plain HTTP/1.1 GET; true on a 200 answer.
fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => read += n,
        }
    }
    head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")
}

fn wait_ready(server: &mut ChildGuard, addr: SocketAddr, logs: &Path) {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "kudos exited before becoming ready ({status})\n--- server log ---\n{}",
                read_file(logs)
            );
        }
        if http_ok(addr, "/readyz") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kudos not ready at http://{addr}/readyz within {READY_DEADLINE:?}\n--- server log ---\n{}",
            read_file(logs)
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn trophy_node_sdk_drives_kudos() {
    let install = sdk_install_dir();

    let work = tempfile::tempdir().expect("temp dir");
    let data_dir = work.path().join("data");
    let server_log = work.path().join("server.log");
    let port = free_port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let log_file = File::create(&server_log).expect("server log file");
    let mut server = ChildGuard {
        child: Command::new(env!("CARGO_BIN_EXE_kudos"))
            .env("KUDOS_ADDR", addr.to_string())
            .env("KUDOS_DATA_DIR", &data_dir)
            .env("KUDOS_API_KEY", API_KEY)
            .env("RUST_LOG", "warn")
            .env_remove("KUDOS_TEST_CLOCK")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log file"))
            .stderr(log_file)
            .spawn()
            .expect("start the kudos binary"),
    };
    wait_ready(&mut server, addr, &server_log);

    let script_out = work.path().join("script.stdout");
    let script_err = work.path().join("script.stderr");
    let mut check = ChildGuard {
        child: Command::new("node")
            .arg("check.mjs")
            .current_dir(&install)
            .env("KUDOS_URL", format!("http://{addr}"))
            .env("KUDOS_API_KEY", API_KEY)
            .env("NO_COLOR", "1")
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::null())
            .stdout(File::create(&script_out).expect("script stdout file"))
            .stderr(File::create(&script_err).expect("script stderr file"))
            .spawn()
            .expect("start the Node SDK check script"),
    };
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = check
            .child
            .try_wait()
            .expect("wait for the Node SDK script")
        {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(POLL);
    };
    drop(check);
    drop(server);

    let stdout = read_file(&script_out);
    let stderr = read_file(&script_err);
    let report = format!(
        "--- script stdout ---\n{stdout}\n--- script stderr ---\n{stderr}\n--- server log ---\n{}",
        read_file(&server_log)
    );
    let status = status.unwrap_or_else(|| {
        panic!("the Node SDK check did not finish within {SCRIPT_DEADLINE:?}\n{report}")
    });
    println!("{stdout}");
    assert!(
        status.success(),
        "the Trophy Node SDK check failed ({status})\n{report}"
    );
    assert!(
        stdout.lines().any(|l| l.trim() == "NODE SDK CHECK OK"),
        "the Trophy Node SDK check exited 0 without printing NODE SDK CHECK OK\n{report}"
    );
}
