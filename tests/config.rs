//! The configuration through the real binary: `check-config`, `serve
//! --dry-run` with a file, environment variables and flags, and the
//! errors an operator sees.

use std::path::PathBuf;
use std::process::{Command, Output};

fn wsedge(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsedge"));
    cmd.args(args);
    // Only what the test sets: no WSEDGE_* from the caller's shell.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("WSEDGE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("wsedge runs")
}

fn file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("config-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn file_is_overridden_by_env_which_is_overridden_by_flags() {
    let f = file(
        "precedence.toml",
        "[connection]\nping_interval = \"7s\"\npong_timeout = \"3s\"\nidle_timeout = \"9s\"\n",
    );
    let out = wsedge(
        &[
            "serve",
            "--config",
            f.to_str().unwrap(),
            "--dry-run",
            "--idle-timeout",
            "11s",
        ],
        &[
            ("WSEDGE_CONNECTION_PONG_TIMEOUT", "4s"),
            ("WSEDGE_CONNECTION_IDLE_TIMEOUT", "10s"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let fp = f.display().to_string();
    for want in [
        format!("ping_interval = \"7s\"  # file {fp}"),
        "pong_timeout = \"4s\"  # env WSEDGE_CONNECTION_PONG_TIMEOUT".to_string(),
        "idle_timeout = \"11s\"  # flag --idle-timeout".to_string(),
        "close_timeout = \"5s\"\n".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn unknown_keys_are_errors_naming_the_key_and_line() {
    let f = file(
        "typo.toml",
        "listen = \"127.0.0.1:8080\"\n\n[hub]\nmax_subscriptions = 5\nmax_subscripitons = 6\n",
    );
    for args in [
        vec!["check-config", f.to_str().unwrap()],
        vec!["serve", "--config", f.to_str().unwrap()],
    ] {
        let out = wsedge(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("max_subscripitons"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("typo.toml"), "{err}");
    }
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let f = file(
        "masked.toml",
        "[token]\nkey = \"file-secret-1\"\n\n[admin]\nlisten = \"0.0.0.0:9191\"\n",
    );
    let out = wsedge(
        &["check-config", f.to_str().unwrap()],
        &[("WSEDGE_ADMIN_KEY", "env-secret-2"), ("WSEDGE_CORES", "3")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // (The values: a key's name may say "secret", as
    // gateway.secret_access_key does.)
    assert!(
        !text.contains("file-secret") && !text.contains("env-secret"),
        "a secret leaked:\n{text}"
    );
    assert!(text.contains("valid"), "{text}");
    assert!(text.contains("cores = 3  # env WSEDGE_CORES"), "{text}");
    assert!(
        text.contains("key = \"********\"  # env WSEDGE_ADMIN_KEY"),
        "{text}"
    );
    assert!(text.contains("listen = \"0.0.0.0:9191\""), "{text}");
    // Every section is printed, defaults included.
    for section in [
        "[connection]",
        "[rate_limit]",
        "[hub]",
        "[token]",
        "[admission]",
        "[admin]",
        "[shutdown]",
        "[log]",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    // Without the key a public admin address is refused, naming the key.
    let out = wsedge(&["check-config", f.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("admin.key"), "{}", stderr(&out));
}

#[test]
fn bad_values_name_their_variable_or_flag() {
    let out = wsedge(
        &["serve", "--dry-run"],
        &[("WSEDGE_CONNECTION_PING_INTERVAL", "soon")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("WSEDGE_CONNECTION_PING_INTERVAL"),
        "{}",
        stderr(&out)
    );
    let out = wsedge(&["serve", "--dry-run", "--slow-consumer", "maybe"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("connection.slow_consumer") && err.contains("--slow-consumer"),
        "{err}"
    );
    // A misspelt variable is reported, not silently ignored.
    let out = wsedge(&["serve", "--dry-run"], &[("WSEDGE_TOKEN_KYE", "x")]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("WSEDGE_TOKEN_KYE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_example_file_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/wsedge.example.toml");
    let out = wsedge(&["check-config", example], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn every_key_has_a_variable_and_set_reaches_keys_without_a_flag() {
    let out = wsedge(
        &[
            "serve",
            "--dry-run",
            "--set",
            "admin.threads=3",
            "--set",
            "admin.query_timeout=750ms",
        ],
        &[("WSEDGE_CONNECTION_BUFFER_GROWTH_STEP", "65536")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "threads = 3  # flag --set admin.threads",
        "query_timeout = \"750ms\"  # flag --set admin.query_timeout",
        "buffer_growth_step = 65536  # env WSEDGE_CONNECTION_BUFFER_GROWTH_STEP",
        "max_body_bytes = 1048576\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let out = wsedge(&["serve", "--dry-run", "--set", "admin.thraeds=3"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("admin.thraeds"), "{}", stderr(&out));
}

#[test]
fn check_config_example_prints_the_committed_example() {
    let out = wsedge(&["check-config", "--example"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/wsedge.example.toml"))
            .unwrap();
    assert!(
        stdout(&out) == committed,
        "wsedge.example.toml is stale: cargo run -- check-config --example > wsedge.example.toml"
    );
}

/// Issue 13 item 7: a TOML error on a secret's line named the value
/// (toml's message quotes the source line, or the value itself). The key
/// and the line are named; the value never is.
#[test]
fn regression_config_errors_never_print_a_secret() {
    let cases = [
        (
            "unquoted-admin-key.toml",
            "[admin]\nkey = s3cr3t\n",
            "s3cr3t",
            "admin.key",
        ),
        (
            "integer-token-key.toml",
            "[token]\nkey = 918273645\n",
            "918273645",
            "token.key",
        ),
        (
            "inline-token-key.toml",
            "listen = \"127.0.0.1:1\"\ntoken = { key = 7777777 }\n",
            "7777777",
            "token.key",
        ),
    ];
    for (name, text, secret, key) in cases {
        let f = file(name, text);
        for args in [
            vec!["check-config", f.to_str().unwrap()],
            vec!["serve", "--dry-run", "--config", f.to_str().unwrap()],
        ] {
            let out = wsedge(&args, &[]);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let (o, e) = (stdout(&out), stderr(&out));
            assert!(
                !o.contains(secret) && !e.contains(secret),
                "{args:?} leaked:\n{o}{e}"
            );
            assert!(e.contains(key), "{args:?} does not name {key}:\n{e}");
            assert!(
                e.contains("line 2"),
                "{args:?} does not name the line:\n{e}"
            );
        }
    }
    // An error elsewhere in a file with a secret still shows its own line.
    let f = file(
        "secret-and-typo.toml",
        "[token]\nkey = \"quoted-s3cr3t\"\n\n[hub]\nmax_subscriptions = \"five\"\n",
    );
    let out = wsedge(&["check-config", f.to_str().unwrap()], &[]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(!e.contains("quoted-s3cr3t"), "{e}");
    assert!(
        e.contains("line 5") && e.contains("max_subscriptions"),
        "{e}"
    );
}
