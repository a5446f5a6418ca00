//! Compatibility check against the OFFICIAL Trophy Python SDK (`trophy==1.27.0` from PyPI).
//!
//! Starts the real `kudos` binary on a free loopback port with a fresh data dir, then runs
//! `tests/sdk/trophy_sdk_check.py` with the SDK pointed at it (only the base URLs are
//! switched). The SDK is installed into a venv at `<target dir>/sdk-venv` the first time;
//! a failed install fails the test (it is never skipped).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SDK_REQUIREMENT: &str = "trophy==1.27.0";
const SDK_VERSION: &str = "1.27.0";
const API_KEY: &str = "sdkcheck.0123456789abcdef";
const READY_DEADLINE: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(50);
/// The whole SDK script; it makes a few dozen requests to a local server.
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

fn find_python3() -> PathBuf {
    for candidate in ["python3", "python"] {
        let probe = Command::new(candidate)
            .args(["-c", "import sys; assert sys.version_info >= (3, 8)"])
            .stdin(Stdio::null())
            .output();
        if matches!(probe, Ok(ref o) if o.status.success()) {
            return PathBuf::from(candidate);
        }
    }
    panic!("python3 (>= 3.8) not found on PATH; it is needed to run the Trophy SDK check");
}

/// `<venv>/bin/python` with `trophy==1.27.0` importable, creating the venv if needed.
fn sdk_python() -> PathBuf {
    let venv = target_dir().join("sdk-venv");
    let python = venv.join("bin").join("python");
    let check = format!(
        "import importlib.metadata as m, trophy; \
         v = m.version('trophy'); assert v == '{SDK_VERSION}', 'trophy ' + v"
    );
    let ready = |python: &Path| {
        python.exists()
            && Command::new(python)
                .args(["-c", &check])
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return python;
    }
    if !python.exists() {
        let system = find_python3();
        let out = run(
            Command::new(&system)
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
            "python3 -m venv",
        );
        assert!(
            out.status.success(),
            "creating the venv at {} failed\n{}",
            venv.display(),
            describe(&out)
        );
    }
    let out = run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SDK_REQUIREMENT,
        ]),
        "pip install",
    );
    assert!(
        out.status.success(),
        "pip install {SDK_REQUIREMENT} into {} failed\n{}",
        venv.display(),
        describe(&out)
    );
    let out = run(
        Command::new(&python).args(["-c", &check]),
        "SDK import check",
    );
    assert!(
        out.status.success(),
        "{SDK_REQUIREMENT} installed but not importable\n{}",
        describe(&out)
    );
    python
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
        std::thread::sleep(READY_POLL);
    }
}

#[test]
fn trophy_python_sdk_drives_kudos() {
    let python = sdk_python();
    let script = manifest_dir().join("tests/sdk/trophy_sdk_check.py");
    assert!(script.exists(), "missing {}", script.display());

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
        child: Command::new(&python)
            .arg(&script)
            .current_dir(manifest_dir())
            .env("KUDOS_URL", format!("http://{addr}"))
            .env("KUDOS_API_KEY", API_KEY)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&script_out).expect("script stdout file"))
            .stderr(File::create(&script_err).expect("script stderr file"))
            .spawn()
            .expect("start the SDK check script"),
    };
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = check.child.try_wait().expect("wait for the SDK script") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(READY_POLL);
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
        panic!("the SDK check did not finish within {SCRIPT_DEADLINE:?}\n{report}")
    });
    println!("{stdout}");
    assert!(
        status.success(),
        "the Trophy SDK check failed ({status})\n{report}"
    );
    assert!(
        stdout.lines().any(|l| l.trim() == "SDK CHECK OK"),
        "the Trophy SDK check exited 0 without printing SDK CHECK OK\n{report}"
    );
}
