//! The `signalhub` binary: a thin command line over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signalhub::config::{Config, Overrides, ProcessEnv};

mod cli;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it initializes (before `main`): a background thread
/// returns freed pages to the OS after a second, so memory used briefly (HTTP handshake
/// buffers during a connection storm) does not stay resident while the server idles.
#[cfg(not(target_env = "msvc"))]
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads as `const char *malloc_conf`.
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to an immutable, NUL-terminated static byte string; sharing it
// between threads is sound.
#[allow(unsafe_code)]
unsafe impl Sync for MallocConf {}

#[derive(Parser)]
#[command(
    name = "signalhub",
    version,
    about = "Real-time signal streaming server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on [env: SIGNALHUB_LISTEN] [default: 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<String>,
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The publisher API key (at least 8 characters), instead of SIGNALHUB_API_KEYS, the
        /// file's api_keys or a generated key. Without any, a generated key is kept in
        /// signalhub.key beside the store and reused on every start.
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Check a configuration and print what it resolves to, without serving.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Follow channels: print each publication as one JSON line, reconnecting and recovering.
    Tail(cli::TailArgs),
    /// Publish JSON data on a channel through the HTTP API and print the answer.
    Publish(cli::PublishArgs),
    /// Mint a session token locally with the configured JWT secret (for development).
    Token(cli::TokenArgs),
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the configuration (defaults, the file, SIGNALHUB_* variables) and print what
    /// it resolves to, as TOML without secrets; exit 0 when valid, 2 naming the bad setting.
    Check {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn load(overrides: &Overrides) -> Result<Config, ExitCode> {
    Config::load(overrides, &ProcessEnv).map_err(|e| {
        eprintln!("signalhub: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            action: ConfigAction::Check { config },
        } => match load(&Overrides {
            config,
            ..Overrides::default()
        }) {
            Ok(c) => {
                print!("{}", signalhub::config_report::render(&c));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve {
            listen,
            config,
            api_key,
        } => match load(&Overrides {
            listen,
            config,
            api_key,
        }) {
            Ok(config) => serve(config),
            Err(code) => code,
        },
        Command::Tail(args) => cli::tail(args),
        Command::Publish(args) => cli::publish(args),
        Command::Token(args) => cli::token(args),
    }
}

fn serve(mut config: Config) -> ExitCode {
    let key_file = match signalhub::keyfile::keep_generated_key(&mut config) {
        Ok(path) => path,
        Err(e @ signalhub::keyfile::KeyFileError::Invalid { .. }) => {
            eprintln!("signalhub: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("signalhub: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signalhub: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match signalhub::server::bind(config.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("signalhub: cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let generated_key = config.generated_key.then(|| config.api_keys[0].key.clone());
        // Open the store before announcing the address: "listening" means ready.
        let state = match signalhub::AppState::open(config).await {
            Ok(state) => state,
            Err(e) => {
                eprintln!("signalhub: cannot open the signal store: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if let Some(key) = generated_key {
            eprintln!("publisher API key: {key}");
            match &key_file {
                Some(path) => eprintln!(
                    "  (kept in {}, reused on every start; for curl and `signalhub publish`:)",
                    path.display()
                ),
                None => eprintln!(
                    "  (new on every start with this store; for curl and `signalhub publish`:)"
                ),
            }
            eprintln!("  export SIGNALHUB_API_KEY={key}");
        }
        eprintln!("signalhub listening on {addr}");
        match signalhub::server::serve(listener, state, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("signalhub: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Completes on SIGTERM or ctrl-c (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
