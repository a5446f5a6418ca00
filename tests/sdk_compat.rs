//! Compatibility check against the OFFICIAL Trophy Python SDK (`trophy==1.27.0` from PyPI).
//!
//! Starts the real `kudos` binary on a free loopback port with a fresh data dir, then runs
//! `tests/sdk/trophy_sdk_check.py` with the SDK pointed at it (only the base URLs are
//! switched). The SDK is installed into a venv at `<target dir>/sdk-venv` the first time;
//! a failed install fails the test (it is never skipped).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{describe, manifest_dir, run, run_sdk_script, target_dir};

const SDK_REQUIREMENT: &str = "trophy==1.27.0";
/// The Standard Webhooks reference library, to verify `webhook-signature` as a consumer would.
const WEBHOOKS_REQUIREMENT: &str = "standardwebhooks==1.0.0";
const SDK_VERSION: &str = "1.27.0";

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

/// `<venv>/bin/python` with `trophy==1.27.0` importable, creating the venv if needed. Set up
/// once per test binary: tests run in parallel, and two creating the venv at once collide
/// (`File exists`) on a clean checkout.
fn sdk_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(set_up_sdk_python).clone()
}

fn set_up_sdk_python() -> PathBuf {
    let venv = target_dir().join("sdk-venv");
    let python = venv.join("bin").join("python");
    let check = format!(
        "import importlib.metadata as m, trophy, standardwebhooks; \
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
            WEBHOOKS_REQUIREMENT,
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

#[test]
fn trophy_python_sdk_drives_kudos() {
    let python = sdk_python();
    let script = manifest_dir().join("tests/sdk/trophy_sdk_check.py");
    assert!(script.exists(), "missing {}", script.display());
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .current_dir(manifest_dir())
        .env("PYTHONUNBUFFERED", "1");
    run_sdk_script("Trophy Python SDK check", cmd, "SDK CHECK OK");
}

/// The SDK's HTTP calls, as the coverage test (`tests/it/coverage.rs`) reads them from
/// `tests/spec/sdk-1.27-calls.json`, are exactly the calls the installed SDK can make.
#[test]
fn the_vendored_list_of_sdk_calls_matches_the_sdk() {
    let python = sdk_python();
    let out = run(
        Command::new(&python)
            .arg(manifest_dir().join("tests/spec/extract_sdk_calls.py"))
            .current_dir(manifest_dir()),
        "extract_sdk_calls.py",
    );
    assert!(out.status.success(), "{}", describe(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let vendored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(manifest_dir().join("tests/spec/sdk-1.27-calls.json"))
            .expect("tests/spec/sdk-1.27-calls.json"),
    )
    .expect("json");
    assert_eq!(
        listed, vendored,
        "the SDK's calls changed: regenerate tests/spec/sdk-1.27-calls.json"
    );
    assert!(listed.as_array().is_some_and(|a| a.len() >= 85), "{listed}");
}
