//! The binary's command line: `check-config` and `serve`'s config errors.

use std::process::Command;

fn ackbar(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ackbar"))
        .args(args)
        .output()
        .expect("run ackbar");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.json");
    let (code, stdout, stderr) = ackbar(&["check-config", example]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert!(stdout.contains("sandbox mode"), "{stdout}");
    assert!(
        stdout.contains("route \"database\" -> C0DBPAGES1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("otlp:   log records with severityNumber >= 17")
            && stdout.contains("trace links https://jaeger.example/trace/{trace_id}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("digest \"C0ALERTS01 week mon 09:00 Europe/Berlin\": next "),
        "{stdout}"
    );
}

#[test]
fn check_config_names_the_path_of_a_mistake_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"routes": [{"name": "a", "channel": "C0123ABCD", "matchers": ["team=~(unclosed"]}]}"#,
    )
    .unwrap();
    let (code, _, stderr) = ackbar(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("routes[0].matchers[0]"), "{stderr}");
}

#[test]
fn serve_refuses_an_invalid_config_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"listen": "127.0.0.1:0", "delivery": {"post_interval": "soon"}}"#,
    )
    .unwrap();
    let (code, _, stderr) = ackbar(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("delivery.post_interval"), "{stderr}");
}
