//! The client subcommands of the built `signalhub` binary against a server in this process:
//! `token` prints what the server accepts, `publish` answers with the seq, `tail` prints
//! publications as JSON lines.

mod common;

use std::process::Stdio;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const SECRET: &str = "cli-tests-secret-0123456789";

/// The binary with an empty environment, so nothing from the test's own leaks in.
fn signalhub(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signalhub"));
    command
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs to completion; returns exit code, stdout, stderr.
async fn output(mut command: Command) -> (i32, String, String) {
    let out = tokio::time::timeout(GUARD, command.output())
        .await
        .expect("the command finishes")
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Connects with `?token=` and returns the welcome.
async fn welcome_with(server: &TestServer, token: &str) -> Value {
    let (_ws, welcome) = server.ws_with_welcome(&format!("/ws?token={token}")).await;
    welcome
}

#[tokio::test]
async fn token_prints_a_session_token_the_server_accepts_at_connect() {
    let server = TestServer::start_with(config("", &[("SIGNALHUB_JWT_SECRET", SECRET)])).await;
    let mut command = signalhub(&["token", "--user", "u_cli", "--tier", "PROFESSIONAL"]);
    command.env("SIGNALHUB_JWT_SECRET", SECRET);
    let (code, stdout, stderr) = output(command).await;
    assert_eq!(code, 0, "{stderr}");
    let welcome = welcome_with(&server, stdout.trim()).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["auth"], "session");
    assert_eq!(welcome["user"], "u_cli");
    assert_eq!(welcome["tier"], "premium");
}

#[tokio::test]
async fn token_signs_with_the_config_files_jwt_secret() {
    let server = TestServer::start_with(config("", &[("SIGNALHUB_JWT_SECRET", SECRET)])).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signalhub.toml");
    std::fs::write(&file, format!("jwt_secret = \"{SECRET}\"\n")).unwrap();
    let command = signalhub(&[
        "token",
        "--user",
        "u_file",
        "--config",
        file.to_str().unwrap(),
    ]);
    let (code, stdout, stderr) = output(command).await;
    assert_eq!(code, 0, "{stderr}");
    let welcome = welcome_with(&server, stdout.trim()).await;
    assert_eq!(
        (welcome["user"].as_str(), welcome["tier"].as_str()),
        (Some("u_file"), Some("free"))
    );
}

#[tokio::test]
async fn token_without_a_secret_exits_2_saying_what_to_set() {
    let (code, stdout, stderr) = output(signalhub(&["token", "--user", "u"])).await;
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("SIGNALHUB_JWT_SECRET"), "{stderr}");
}

#[tokio::test]
async fn publish_prints_the_answer_with_the_seq() {
    let server = TestServer::start().await;
    let url = server.http_url("");
    let command = signalhub(&[
        "publish",
        "news",
        r#"{"price":1.0950}"#,
        "--url",
        &url,
        "--api-key",
        PUBLISHER_KEY,
    ]);
    let (code, stdout, stderr) = output(command).await;
    assert_eq!(code, 0, "{stderr}");
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (answer["channel"].as_str(), answer["seq"].as_u64()),
        (Some("news"), Some(1))
    );

    let (_, history) = server.get("/api/v1/channels/news/history").await;
    let publication = &history["publications"][0];
    assert_eq!(publication["type"], "message", "the default type");
    let raw = server.get_raw("/api/v1/channels/news/history", None).await;
    assert!(
        raw.contains(r#""data":{"price":1.0950}"#),
        "digits kept: {raw}"
    );
}

#[tokio::test]
async fn publish_refused_prints_the_servers_error_and_exits_1() {
    let server = TestServer::start().await;
    let url = server.http_url("");
    let mut command = signalhub(&[
        "publish",
        "news",
        r#"{"a":1}"#,
        "--url",
        &url,
        "--tier",
        "diamond",
    ]);
    command.env("SIGNALHUB_API_KEY", PUBLISHER_KEY);
    let (code, stdout, stderr) = output(command).await;
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("422") && stderr.contains("diamond"),
        "{stderr}"
    );
}

#[tokio::test]
async fn tail_prints_a_publication_as_one_json_line() {
    let server = TestServer::start().await;
    let url = server.http_url("");
    let mut child = signalhub(&["tail", "news", "--url", &url]).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();

    // Publish once the subscription is in place.
    loop {
        let line = tokio::time::timeout(GUARD, stderr.next_line())
            .await
            .expect("tail reports its subscription")
            .unwrap()
            .expect("tail is running");
        if line.contains("subscribed to news") {
            break;
        }
    }
    server.publish("news", json!({"n": 1})).await;
    let line = tokio::time::timeout(GUARD, stdout.next_line())
        .await
        .expect("tail prints the publication")
        .unwrap()
        .expect("a line");
    let envelope: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(envelope["channel"], "news");
    assert_eq!(envelope["seq"], 1);
    assert_eq!(envelope["data"], json!({"n": 1}));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn serve_on_a_public_address_without_a_wallet_domain_exits_2_naming_it() {
    let mut command = signalhub(&["serve", "--listen", "0.0.0.0:0"]);
    command.env("SIGNALHUB_STORE", "sqlite::memory:");
    let (code, _stdout, stderr) = output(command).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("auth.wallet_domain"), "{stderr}");
    assert!(stderr.contains("SIGNALHUB_WALLET_DOMAIN"), "{stderr}");
}
