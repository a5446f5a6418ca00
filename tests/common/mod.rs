//! Shared by the SDK compatibility tests: the real `kudos` binary on a free loopback port with
//! a fresh data dir, and one SDK script run against it with a deadline. The scripts get the
//! server's base URL in `KUDOS_URL` and its admin key in `KUDOS_API_KEY`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const API_KEY: &str = "sdkcheck.0123456789abcdef";
const READY_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// A whole SDK script; each makes at most a few hundred requests to a local server.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$CARGO_TARGET_DIR`, or `<workspace>/target`: where the SDKs are installed once.
pub fn target_dir() -> PathBuf {
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

pub fn describe(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"))
}

/// Kills and reaps a child process on every path out of the test.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
        if let Ok(Some(status)) = server.0.try_wait() {
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

/// Starts `kudos`, runs `script` against it and asserts that it exits 0 and prints `ok_line`.
/// `name` only labels the failure messages, which include the script output and server log.
pub fn run_sdk_script(name: &str, mut script: Command, ok_line: &str) {
    let work = tempfile::tempdir().expect("temp dir");
    let server_log = work.path().join("server.log");
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free loopback port")
        .port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let log_file = File::create(&server_log).expect("server log file");
    let mut server = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_kudos"))
            .env("KUDOS_ADDR", addr.to_string())
            .env("KUDOS_DATA_DIR", work.path().join("data"))
            .env("KUDOS_API_KEY", API_KEY)
            .env("RUST_LOG", "warn")
            // The Python check verifies webhook signatures on a loopback receiver.
            .env("KUDOS_WEBHOOK_ALLOW_PRIVATE", "1")
            .env_remove("KUDOS_TEST_CLOCK")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log file"))
            .stderr(log_file)
            .spawn()
            .expect("start the kudos binary"),
    );
    wait_ready(&mut server, addr, &server_log);

    let script_out = work.path().join("script.stdout");
    let script_err = work.path().join("script.stderr");
    let mut check = ChildGuard(
        script
            .env("KUDOS_URL", format!("http://{addr}"))
            .env("KUDOS_API_KEY", API_KEY)
            .stdin(Stdio::null())
            .stdout(File::create(&script_out).expect("script stdout file"))
            .stderr(File::create(&script_err).expect("script stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {name} script: {e}")),
    );
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = check.0.try_wait().expect("wait for the SDK script") {
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
    let report = format!(
        "--- script stdout ---\n{stdout}\n--- script stderr ---\n{}\n--- server log ---\n{}",
        read_file(&script_err),
        read_file(&server_log)
    );
    let status = status.unwrap_or_else(|| {
        panic!("the {name} did not finish within {SCRIPT_DEADLINE:?}\n{report}")
    });
    println!("{stdout}");
    assert!(status.success(), "the {name} failed ({status})\n{report}");
    assert!(
        stdout.lines().any(|l| l.trim() == ok_line),
        "the {name} exited 0 without printing {ok_line}\n{report}"
    );
}
