//! The built `signalhub` binary: the client subcommands against a server in this process
//! (`token` prints what the server accepts, `publish` answers with the seq, `tail` prints
//! publications as JSON lines), `serve` as a process (its publisher key across restarts) and
//! `config check` (on the README's own TOML example).

mod common;

use std::path::Path;
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

/// A `signalhub serve` process and what it printed to standard error up to `listening on`.
struct Served {
    child: tokio::process::Child,
    /// The bound address, from `signalhub listening on ADDR`.
    addr: String,
    lines: Vec<String>,
}

impl Served {
    /// The key after `publisher API key: `, when one was printed.
    fn printed_key(&self) -> Option<String> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("publisher API key: "))
            .map(str::to_string)
    }

    async fn publish_with(&self, key: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("http://{}/api/v1/publish", self.addr))
            .bearer_auth(key)
            .json(&json!({"channel": "news", "type": "test", "data": {"n": 1}}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Starts `signalhub serve --listen 127.0.0.1:0 ARGS` in `dir` (an empty environment plus
/// `env`) and waits for `listening on`.
async fn serve_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut command = signalhub(&all);
    command.current_dir(dir).envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    loop {
        let line = tokio::time::timeout(GUARD, stderr.next_line())
            .await
            .expect("the server starts")
            .unwrap();
        let Some(line) = line else {
            panic!("the server exited: {lines:?}");
        };
        if let Some((_, addr)) = line.split_once("listening on ") {
            let addr = addr.trim().to_string();
            lines.push(line);
            // Keep reading standard error, so the server never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
            return Served { child, addr, lines };
        }
        lines.push(line);
    }
}

#[tokio::test]
async fn serve_without_keys_keeps_its_generated_key_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = serve_in(dir.path(), &[], &[]).await;
    let key = first.printed_key().expect("a generated key is printed");
    assert!(
        first
            .lines
            .contains(&format!("  export SIGNALHUB_API_KEY={key}")),
        "{:?}",
        first.lines
    );
    assert_eq!(first.publish_with(&key).await, 200);
    first.child.kill().await.unwrap();

    let file = dir.path().join("signalhub.key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may read the key");
    }

    let mut second = serve_in(dir.path(), &[], &[]).await;
    assert_eq!(second.printed_key().as_deref(), Some(key.as_str()));
    assert_eq!(second.publish_with(&key).await, 200);
    second.child.kill().await.unwrap();
}

#[tokio::test]
async fn serve_with_api_key_uses_it_and_writes_no_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve_in(dir.path(), &["--api-key", "my-publisher-key-1"], &[]).await;
    assert_eq!(served.printed_key(), None, "{:?}", served.lines);
    assert_eq!(served.publish_with("my-publisher-key-1").await, 200);
    assert_eq!(served.publish_with("another-key-123").await, 401);
    served.child.kill().await.unwrap();
    assert!(!dir.path().join("signalhub.key").exists());
}

#[tokio::test]
async fn serve_with_a_memory_store_keeps_no_key_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SIGNALHUB_STORE", "sqlite::memory:")];
    let mut first = serve_in(dir.path(), &[], &env).await;
    let key = first.printed_key().expect("a generated key is printed");
    assert_eq!(first.publish_with(&key).await, 200);
    first.child.kill().await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_token_from_signalhub_token_refused_by_a_server_without_the_secret_says_why() {
    // The quick-start server: no SIGNALHUB_JWT_SECRET.
    let server = TestServer::start().await;
    let mut command = signalhub(&["token", "--user", "alice", "--tier", "premium"]);
    command.env("SIGNALHUB_JWT_SECRET", SECRET);
    let (code, token, stderr) = output(command).await;
    assert_eq!(code, 0, "{stderr}");
    let token = token.trim();

    let (status, body) = server.get(&format!("/api/v1/signals?token={token}")).await;
    assert_eq!(status, 401);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("invalid token signature"), "{message}");
    assert!(message.contains("has no SIGNALHUB_JWT_SECRET"), "{message}");
    assert!(!message.contains(token) && !message.contains(SECRET));

    let url = server.http_url("");
    let tail = signalhub(&["tail", "signals", "--url", &url, "--token", token]);
    let (code, _stdout, stderr) = output(tail).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has no SIGNALHUB_JWT_SECRET"), "{stderr}");
}

/// The README's TOML example, as written there.
fn readme_toml() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("```toml\n").expect("README has a TOML example") + "```toml\n".len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_string()
}

#[tokio::test]
async fn config_check_of_the_readme_toml_example_is_clean_and_prints_what_it_resolves_to() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signalhub.toml");
    let example = readme_toml();
    std::fs::write(&file, &example).unwrap();
    let mut command = signalhub(&["config", "check", "--config", file.to_str().unwrap()]);
    command.current_dir(dir.path());
    let (code, stdout, stderr) = output(command).await;
    assert_eq!(code, 0, "{stderr}");

    let report: toml::Table = toml::from_str(&stdout).expect("the report is TOML");
    assert_eq!(report["listen"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(report["jwt_secret"].as_str(), Some("unset"));
    assert_eq!(report["api_keys"]["publisher"].as_integer(), Some(1));
    assert_eq!(report["api_keys"]["generated"].as_bool(), Some(false));
    assert_eq!(report["limits"]["idle_timeout_s"].as_integer(), Some(300));
    assert_eq!(report["channels"][0]["pattern"].as_str(), Some("vip:*"));
    assert_eq!(report["channels"][0]["min_tier"].as_str(), Some("whale"));
    assert_eq!(
        report["history"]["rules"][0]["ttl_s"].as_integer(),
        Some(3600)
    );
    assert_eq!(report["auth"]["audience"].as_str(), Some("signalhub"));
    assert_eq!(report["auth"]["keys"][0]["kid"].as_str(), Some("2026-01"));
    assert_eq!(
        report["auth"]["balance"]["provider"].as_str(),
        Some("jsonrpc")
    );
    // No secret of the example reaches the output.
    let file: toml::Table = toml::from_str(&example).unwrap();
    let api_key = file["api_keys"][0]["key"].as_str().unwrap();
    let secret = file["auth"]["keys"][0]["secret"].as_str().unwrap();
    assert!(
        !stdout.contains(api_key) && !stdout.contains(secret),
        "{stdout}"
    );
}

#[tokio::test]
async fn config_check_of_a_bad_setting_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signalhub.toml");
    std::fs::write(&file, "listen = \"localhost\"\n").unwrap();
    let command = signalhub(&["config", "check", "--config", file.to_str().unwrap()]);
    let (code, stdout, stderr) = output(command).await;
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("invalid configuration: listen:"),
        "{stderr}"
    );
}
