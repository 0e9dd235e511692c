//! The client subcommands of the `signalhub` binary (`tail`, `publish`, `token`); part of the
//! binary only, not of the library.
//!
//! `tail` and `publish` are `signalhub_client::cli`; this module parses their arguments and
//! maps results to exit codes. `token` mints with the minter the server itself builds from
//! the same configuration (`SIGNALHUB_JWT_SECRET` or the file's `jwt_secret`, plus any
//! configured `aud`/`iss`), so what it prints verifies exactly like an admin-minted token.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use signalhub::config::{Config, Overrides, ProcessEnv};
use signalhub_client::cli::{PublishOptions, TailOptions, DEFAULT_URL};
use signalhub_client::error::report;
use signalhub_client::{Backoff, Error};
use signalhub_hub::{AuthKind, TierId};

/// Longest lifetime `signalhub token` mints, as `POST /api/v1/auth/token` (30 days).
const MAX_TTL_S: u64 = 30 * 24 * 3600;

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Channels to follow.
    #[arg(required = true)]
    channels: Vec<String>,
    /// The server's base URL.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// A session token, sent as `token=` at connect.
    #[arg(long)]
    token: Option<String>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The channel to publish on.
    channel: String,
    /// The publication's data, JSON.
    json: String,
    /// The publication's type.
    #[arg(long = "type", default_value = "message")]
    kind: String,
    /// The server's base URL.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    /// A publisher or admin API key.
    #[arg(long, env = "SIGNALHUB_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The tier needed to see the data; lower tiers get a `locked` stub.
    #[arg(long)]
    tier: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token's subject (`sub`).
    #[arg(long)]
    user: String,
    /// The tier (a name or alias on the ladder) [default: the lowest tier]
    #[arg(long)]
    tier: Option<String>,
    /// Lifetime in seconds, at most 30 days.
    #[arg(long, default_value_t = 3600)]
    ttl_s: u64,
    /// TOML configuration file (its `jwt_secret`, tiers and `[auth]` settings).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `signalhub tail`: exit 0 on ctrl-c, 1 when the server ends the connection for good.
pub fn tail(args: TailArgs) -> ExitCode {
    let options = TailOptions {
        url: args.url,
        channels: args.channels,
        token: args.token,
        backoff: Backoff::default(),
    };
    run(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let mut out = std::io::stdout().lock();
        let mut log = std::io::stderr();
        match signalhub_client::cli::tail(options, &mut out, &mut log, ctrl_c).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        }
    })
}

/// `signalhub publish`: prints the answer; exit 1 when the server refuses (its error on
/// standard error) or cannot be reached, 2 when the data is not JSON.
pub fn publish(args: PublishArgs) -> ExitCode {
    let options = PublishOptions {
        url: args.url,
        channel: args.channel,
        kind: args.kind,
        data: args.json,
        api_key: args.api_key,
        tier: args.tier,
    };
    run(async move {
        match signalhub_client::cli::publish(&options).await {
            Ok(answer) => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
            Err(e @ (Error::NotJson { .. } | Error::InvalidUrl { .. })) => fail(&e, 2),
            Err(e) => fail(&e, 1),
        }
    })
}

/// `signalhub token`: prints a session token; exit 2 without a secret or with bad input.
pub fn token(args: TokenArgs) -> ExitCode {
    let overrides = Overrides {
        config: args.config,
        ..Overrides::default()
    };
    let config = match Config::load(&overrides, &ProcessEnv) {
        Ok(config) => config,
        Err(e) => return usage(&e.to_string()),
    };
    if config.jwt_secret.is_none() {
        return usage(
            "no JWT secret to sign with: set SIGNALHUB_JWT_SECRET or jwt_secret in the --config file",
        );
    }
    let user = args.user;
    if user.is_empty() || user.chars().count() > 128 || user.chars().any(char::is_control) {
        return usage("--user must be 1-128 characters, no control characters");
    }
    let ladder = &config.hub.ladder;
    let tier = match &args.tier {
        None => TierId::LOWEST,
        Some(name) => match ladder.parse(name) {
            Some(tier) => tier,
            None => return usage(&format!("--tier: unknown tier {name:?}")),
        },
    };
    if !(1..=MAX_TTL_S).contains(&args.ttl_s) {
        return usage(&format!("--ttl-s must be within 1..{MAX_TTL_S}"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let (token, _expires) =
        config
            .auth
            .minter
            .mint(&user, ladder.name(tier), args.ttl_s, AuthKind::Session, now);
    println!("{token}");
    ExitCode::SUCCESS
}

/// Runs `command` on a single-threaded runtime.
fn run(command: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => {
            eprintln!("signalhub: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `error` with its causes and returns `code`.
fn fail(error: &Error, code: u8) -> ExitCode {
    eprintln!("signalhub: {}", report(error));
    ExitCode::from(code)
}

fn usage(message: &str) -> ExitCode {
    eprintln!("signalhub: {message}");
    ExitCode::from(2)
}
