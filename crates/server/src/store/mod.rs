//! The durable signal store: every signal `POST /api/v1/signals` accepts is written here
//! before the server answers (protocol section 4 "Durability", section 9 items 25-26), and
//! admin tier overrides are kept here (item 13). Two backends behind one enum, chosen by
//! `SIGNALHUB_STORE`: SQLite (a file, or `:memory:`) and PostgreSQL.
//!
//! Decisions beyond the protocol text:
//!
//! * "Stored" means durable: SQLite runs in WAL mode with `synchronous=FULL` (each commit is
//!   fsynced before [`Store::insert_signal`] returns); PostgreSQL commits with the server's
//!   `synchronous_commit` (on by default). Every write is one autocommitted statement.
//! * `signal_id` is unique forever (a `UNIQUE` column, rows are never deleted). A second
//!   insert returns [`Inserted::Duplicate`] with the stored row, whatever the new body; the
//!   caller compares `record_json` or `publisher` if it cares (the server refuses a
//!   `signal_id` another API key stored with 409, so one publisher cannot shadow another's). [`Store::mark_published`] keeps the first
//!   answer, so a retry is answered with what the first publisher got.
//! * `arrival` is a store-assigned, increasing number (SQLite `AUTOINCREMENT`, PostgreSQL
//!   identity): "newest first" and "oldest first" order by it. It may have gaps.
//! * Timestamps are stored as milliseconds since the Unix epoch (a signal's timestamp is
//!   already truncated to milliseconds; finer digits are truncated here too). `since`
//!   compares exactly: a `since` with sub-millisecond digits excludes the millisecond it
//!   falls in.
//! * `confidence` is stored as an `f64` and `tier_rank` as the rank the caller computed at
//!   insert time: reordering the tier ladder later does not rewrite stored ranks.
//! * A query's `limit` is clamped to 1..=[`MAX_QUERY_LIMIT`] (the HTTP layer validates it).
//! * Failures are typed ([`StoreError`]): anything that a retry may fix (connection refused,
//!   pool or lock timeout, busy or full disk, a server shutting down) is
//!   [`StoreError::Unavailable`], which the server answers with 503. Waits are bounded by
//!   [`StoreOptions`] (by default 2 s to get a connection, 5 s for a whole operation), so an
//!   outage answers promptly; PostgreSQL connections that died are replaced on the next use,
//!   so the store works again once the server is back, without a restart.
//! * An operation that timed out may still complete in the background: an insert answered
//!   `Unavailable` can have been stored. A retry then gets `Duplicate` with
//!   `answer_json: None` (never published): the caller publishes it then, as it would an
//!   entry of [`Store::unpublished`].
//! * Migrations (`migrations.rs`) are applied by [`Store::open`], each in its own transaction,
//!   serialized between processes (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock).
//! * `sqlite::memory:` (a path of `:memory:`) is one shared in-memory connection: nothing on
//!   disk, gone with the process. A file store has one writer connection and a few read-only
//!   readers (WAL lets them read while the writer commits). Paths are taken literally (no
//!   `file:` URIs); a relative path is relative to the working directory.
//! * PostgreSQL is reached without TLS (`sslmode=require` is refused as a configuration error).

mod migrations;
mod postgres;
mod sqlite;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The largest `limit` a query may ask for.
pub const MAX_QUERY_LIMIT: u32 = 1000;

/// The `limit` of `GET /api/v1/signals` when none is given.
pub const DEFAULT_QUERY_LIMIT: u32 = 100;

/// Where signals are stored (the server's `config::StoreUrl`, copied here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A file path, or `:memory:`.
    Sqlite(String),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

/// A signal to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSignal {
    /// Unique forever.
    pub signal_id: String,
    /// The canonical record, stored verbatim.
    pub record_json: String,
    /// Canonical pair (upper case), matched exactly by queries.
    pub pair: String,
    /// Canonical signal type (upper case), matched exactly by queries.
    pub signal_type: String,
    /// Within 0..1.
    pub confidence: f64,
    /// The signal's tier as its rank on the tier ladder (free = 0).
    pub tier_rank: u8,
    /// The signal's own `timestamp` (stored to the millisecond).
    pub timestamp: DateTime<Utc>,
    /// Who stored it: a fingerprint of the publisher's API key (never the key), or a source
    /// name; `None` for rows written before the store recorded it.
    pub publisher: Option<String>,
}

/// A stored signal.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSignal {
    /// Store-assigned, increasing with arrival order.
    pub arrival: i64,
    pub signal_id: String,
    pub record_json: String,
    pub pair: String,
    pub signal_type: String,
    pub confidence: f64,
    pub tier_rank: u8,
    pub timestamp: DateTime<Utc>,
    /// The answer JSON the publisher got; `None` until [`Store::mark_published`].
    pub answer_json: Option<String>,
    /// Who stored it ([`NewSignal::publisher`]).
    pub publisher: Option<String>,
}

/// What [`Store::insert_signal`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// Stored now, durably.
    New { arrival: i64 },
    /// The `signal_id` was stored before: the stored row, unchanged.
    Duplicate(StoredSignal),
}

/// Filters of [`Store::query`]; results are newest first by arrival.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalQuery {
    /// Exact canonical pair.
    pub pair: Option<String>,
    /// Exact canonical signal type.
    pub signal_type: Option<String>,
    /// Only signals whose confidence is >= this.
    pub min_confidence: Option<f64>,
    /// Only signals whose `timestamp` is at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only signals whose tier rank is <= this (the caller's tier; `u8::MAX` for API keys).
    pub max_tier_rank: u8,
    /// At most this many (clamped to 1..=[`MAX_QUERY_LIMIT`]).
    pub limit: u32,
}

impl SignalQuery {
    /// No filters, [`DEFAULT_QUERY_LIMIT`], for a caller of the given tier rank.
    pub fn new(max_tier_rank: u8) -> SignalQuery {
        SignalQuery {
            pair: None,
            signal_type: None,
            min_confidence: None,
            since: None,
            max_tier_rank,
            limit: DEFAULT_QUERY_LIMIT,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be used now (connection refused, timeout, busy, disk or IO error,
    /// server shutting down): HTTP 503, and a retry may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data that does not decode, or a damaged database.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// A bad store URL or setting, or a database written by a newer build.
    #[error("store configuration: {0}")]
    Config(String),
    /// [`Store::mark_published`] for a `signal_id` that was never stored.
    #[error("no stored signal with signal_id {0:?}")]
    NotFound(String),
}

/// Timeouts and pool sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Longest wait for a free connection (pool slot, or the SQLite writer).
    pub acquire_timeout: Duration,
    /// Longest wait to open a new PostgreSQL connection (unless the URL sets
    /// `connect_timeout`).
    pub connect_timeout: Duration,
    /// Longest wait for a whole operation, connection included.
    pub operation_timeout: Duration,
    /// SQLite `busy_timeout`: how long a statement waits for another process's lock.
    pub busy_timeout: Duration,
    /// PostgreSQL pool size.
    pub max_connections: usize,
    /// SQLite read-only connections beside the writer (file stores only).
    pub sqlite_readers: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            acquire_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(2),
            max_connections: 8,
            sqlite_readers: 2,
        }
    }
}

/// The signal store: one backend, chosen at open.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Opens the store with [`StoreOptions::default`], applying pending migrations.
    pub async fn open(url: &StoreUrl) -> Result<Store, StoreError> {
        Store::open_with(url, &StoreOptions::default()).await
    }

    /// Opens the store with explicit options, applying pending migrations.
    pub async fn open_with(url: &StoreUrl, options: &StoreOptions) -> Result<Store, StoreError> {
        match url {
            StoreUrl::Sqlite(path) => Ok(Store::Sqlite(SqliteStore::open(path, options).await?)),
            StoreUrl::Postgres(url) => {
                Ok(Store::Postgres(PostgresStore::open(url, options).await?))
            }
        }
    }

    /// Stores a new signal durably. `signal_id` is unique forever: a second insert of the same
    /// id stores nothing and returns [`Inserted::Duplicate`] with the stored row (its
    /// `answer_json` set once published), so a retry can be answered with the first answer.
    pub async fn insert_signal(&self, s: &NewSignal) -> Result<Inserted, StoreError> {
        match self {
            Store::Sqlite(b) => b.insert_signal(s).await,
            Store::Postgres(b) => b.insert_signal(s).await,
        }
    }

    /// Records the answer JSON the publisher got, marking the signal published. The first
    /// answer stays: marking an already published signal again changes nothing.
    pub async fn mark_published(
        &self,
        signal_id: &str,
        answer_json: &str,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(b) => b.mark_published(signal_id, answer_json).await,
            Store::Postgres(b) => b.mark_published(signal_id, answer_json).await,
        }
    }

    /// Signals stored but never marked published (the process died in between), oldest first:
    /// the server publishes them at start.
    pub async fn unpublished(&self) -> Result<Vec<StoredSignal>, StoreError> {
        match self {
            Store::Sqlite(b) => b.unpublished().await,
            Store::Postgres(b) => b.unpublished().await,
        }
    }

    /// Stored signals matching every filter, newest first by arrival.
    pub async fn query(&self, q: &SignalQuery) -> Result<Vec<StoredSignal>, StoreError> {
        match self {
            Store::Sqlite(b) => b.query(q).await,
            Store::Postgres(b) => b.query(q).await,
        }
    }

    /// Sets (`Some`) or clears (`None`) an admin's tier override for `user`.
    pub async fn set_user_tier(&self, user: &str, tier: Option<&str>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(b) => b.set_user_tier(user, tier).await,
            Store::Postgres(b) => b.set_user_tier(user, tier).await,
        }
    }

    /// The tier override for `user`, if any.
    pub async fn user_tier(&self, user: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(b) => b.user_tier(user).await,
            Store::Postgres(b) => b.user_tier(user).await,
        }
    }

    /// Every tier override as `(user, tier)`, sorted by user (loaded at start).
    pub async fn user_tiers(&self) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            Store::Sqlite(b) => b.user_tiers().await,
            Store::Postgres(b) => b.user_tiers().await,
        }
    }

    /// Readiness probe: a cheap query; `Err` when the backend is unreachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(b) => b.ping().await,
            Store::Postgres(b) => b.ping().await,
        }
    }

    /// The newest applied migration version.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        match self {
            Store::Sqlite(b) => b.schema_version().await,
            Store::Postgres(b) => b.schema_version().await,
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

/// The columns of a [`StoredSignal`], in [`RawSignal`] order.
const SIGNAL_COLUMNS: &str =
    "arrival, signal_id, record_json, pair, signal_type, confidence, tier_rank, ts_ms, answer_json, \
     publisher";

/// A row as the backends read it, before validation.
struct RawSignal {
    arrival: i64,
    signal_id: String,
    record_json: String,
    pair: String,
    signal_type: String,
    confidence: f64,
    tier_rank: i64,
    ts_ms: i64,
    answer_json: Option<String>,
    publisher: Option<String>,
}

impl RawSignal {
    fn decode(self) -> Result<StoredSignal, StoreError> {
        let tier_rank = u8::try_from(self.tier_rank).map_err(|_| {
            StoreError::Corrupt(format!(
                "signal {:?}: tier_rank {} is out of range",
                self.signal_id, self.tier_rank
            ))
        })?;
        let timestamp = DateTime::from_timestamp_millis(self.ts_ms).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "signal {:?}: timestamp {} ms is out of range",
                self.signal_id, self.ts_ms
            ))
        })?;
        Ok(StoredSignal {
            arrival: self.arrival,
            signal_id: self.signal_id,
            record_json: self.record_json,
            pair: self.pair,
            signal_type: self.signal_type,
            confidence: self.confidence,
            tier_rank,
            timestamp,
            answer_json: self.answer_json,
            publisher: self.publisher,
        })
    }
}

/// A value bound to a dynamically built query.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Text(String),
    Real(f64),
    Int(i64),
    Rank(u8),
}

/// The SQL and parameters of [`Store::query`]; `placeholder(n)` writes the n-th (1-based)
/// parameter in the backend's syntax. Only the filters that are set appear, so indexes apply.
fn query_sql(q: &SignalQuery, placeholder: fn(usize) -> String) -> (String, Vec<Param>) {
    let mut params = vec![Param::Rank(q.max_tier_rank)];
    let mut sql = format!(
        "SELECT {SIGNAL_COLUMNS} FROM signals WHERE tier_rank <= {}",
        placeholder(1)
    );
    let mut filter = |column_op: &str, param: Param| {
        params.push(param);
        sql.push_str(&format!(" AND {column_op} {}", placeholder(params.len())));
    };
    if let Some(pair) = &q.pair {
        filter("pair =", Param::Text(pair.clone()));
    }
    if let Some(signal_type) = &q.signal_type {
        filter("signal_type =", Param::Text(signal_type.clone()));
    }
    if let Some(min) = q.min_confidence {
        filter("confidence >=", Param::Real(min));
    }
    if let Some(since) = q.since {
        filter("ts_ms >=", Param::Int(since_millis(since)));
    }
    params.push(Param::Int(i64::from(q.limit.clamp(1, MAX_QUERY_LIMIT))));
    sql.push_str(&format!(
        " ORDER BY arrival DESC LIMIT {}",
        placeholder(params.len())
    ));
    (sql, params)
}

/// The first whole millisecond at or after `t`.
fn since_millis(t: DateTime<Utc>) -> i64 {
    let ms = t.timestamp_millis();
    if DateTime::from_timestamp_millis(ms) == Some(t) {
        ms
    } else {
        ms.saturating_add(1)
    }
}

/// Now, as recorded in `schema_migrations.applied_at`.
fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    //! The conformance suite: every case runs against SQLite (a temp file) and PostgreSQL
    //! (`SIGNALHUB_TEST_POSTGRES`, one fresh schema per test), plus backend-specific tests.
    //!
    //! PostgreSQL tests print `skipped: SIGNALHUB_TEST_POSTGRES not set` and pass without a
    //! server, unless `SIGNALHUB_REQUIRE_EXTERNAL=1` (then they fail). With a throwaway cluster:
    //!
    //! ```text
    //! eval "$(scripts/postgres.sh)"      # exports SIGNALHUB_TEST_POSTGRES{,_DIR,_CTL}
    //! SIGNALHUB_REQUIRE_EXTERNAL=1 cargo test -p signalhub store::
    //! scripts/postgres.sh destroy "$SIGNALHUB_TEST_POSTGRES_DIR"
    //! ```
    //!
    //! The outage tests stop or freeze that cluster through `SIGNALHUB_TEST_POSTGRES_CTL`; the
    //! other PostgreSQL tests wait for them through an in-process lock, which holds under
    //! `cargo test` (one process per test binary) but not under nextest's process-per-test.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    /// PostgreSQL tests hold this shared; the outage test holds it exclusively while it stops
    /// the server (tests of one binary run as threads of one process).
    static EXTERNAL_POSTGRES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

    fn require_external() -> bool {
        std::env::var("SIGNALHUB_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
    }

    /// `Some(value)` when the variable is set; else prints the skip line and returns `None`,
    /// or panics when `SIGNALHUB_REQUIRE_EXTERNAL=1`.
    fn external(var: &str) -> Option<String> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Some(v),
            _ if require_external() => {
                panic!("{var} not set and SIGNALHUB_REQUIRE_EXTERNAL=1")
            }
            _ => {
                println!("skipped: {var} not set");
                None
            }
        }
    }

    /// Where one test's store lives; [`Harness::open`] opens it again at the same place.
    struct Harness {
        url: StoreUrl,
        options: StoreOptions,
        _dir: Option<tempfile::TempDir>,
        _shared: Option<tokio::sync::RwLockReadGuard<'static, ()>>,
        pg_admin: Option<(String, String)>,
    }

    impl Harness {
        fn sqlite() -> Harness {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("signals.db");
            Harness {
                url: StoreUrl::Sqlite(path.to_string_lossy().into_owned()),
                options: StoreOptions::default(),
                _dir: Some(dir),
                _shared: None,
                pg_admin: None,
            }
        }

        /// A fresh schema in the scratch database; `None` (skipped) without one.
        async fn postgres() -> Option<Harness> {
            let base = external("SIGNALHUB_TEST_POSTGRES")?;
            let shared = EXTERNAL_POSTGRES.read().await;
            let mut h = Harness::postgres_at(&base).await;
            h._shared = Some(shared);
            Some(h)
        }

        async fn postgres_at(base: &str) -> Harness {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let schema = format!(
                "t_{}_{}_{}",
                std::process::id(),
                Utc::now().timestamp_micros(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            admin_sql(base, &format!("CREATE SCHEMA {schema}")).await;
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
            Harness {
                url: StoreUrl::Postgres(url),
                options: StoreOptions::default(),
                _dir: None,
                _shared: None,
                pg_admin: Some((base.to_string(), schema)),
            }
        }

        async fn open(&self) -> Store {
            Store::open_with(&self.url, &self.options)
                .await
                .expect("open store")
        }

        async fn cleanup(self) {
            if let Some((base, schema)) = &self.pg_admin {
                admin_sql(base, &format!("DROP SCHEMA {schema} CASCADE")).await;
            }
        }
    }

    async fn admin_sql(url: &str, sql: &str) {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to SIGNALHUB_TEST_POSTGRES");
        let task = tokio::spawn(connection);
        client.batch_execute(sql).await.expect(sql);
        drop(client);
        let _ = task.await;
    }

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().expect("valid time")
    }

    /// 2025-08-11T00:00:00Z.
    const T0: i64 = 1_754_870_400_000;

    /// Awaits `f`, failing the test if it never answers: a guard against a hang, not a
    /// latency assertion (how long an outage takes to answer is printed, not asserted).
    async fn hang_guard<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("the store answers (a bounded wait)")
    }

    fn signal(id: &str) -> NewSignal {
        NewSignal {
            signal_id: id.to_string(),
            record_json: format!(
                r#"{{"signal_id":"{id}","pair":"EUR_USD","signal_type":"BUY","entry_price":1.0950,"take_profit":[],"confidence_score":0.85,"timestamp":"2025-08-11T00:23:15.123Z","tier":"premium","metadata":{{"note":"é ✓"}}}}"#
            ),
            pair: "EUR_USD".to_string(),
            signal_type: "BUY".to_string(),
            confidence: 0.85,
            tier_rank: 1,
            timestamp: at(T0 + 1_395_123),
            publisher: Some("key:0123456789abcdef".to_string()),
        }
    }

    fn with(id: &str, pair: &str, kind: &str, confidence: f64, rank: u8, ts_ms: i64) -> NewSignal {
        NewSignal {
            pair: pair.to_string(),
            signal_type: kind.to_string(),
            confidence,
            tier_rank: rank,
            timestamp: at(ts_ms),
            ..signal(id)
        }
    }

    async fn insert_new(store: &Store, s: &NewSignal) -> i64 {
        match store.insert_signal(s).await.expect("insert") {
            Inserted::New { arrival } => arrival,
            other => panic!("expected New for {}, got {other:?}", s.signal_id),
        }
    }

    fn ids(rows: &[StoredSignal]) -> Vec<&str> {
        rows.iter().map(|r| r.signal_id.as_str()).collect()
    }

    fn all() -> SignalQuery {
        SignalQuery::new(u8::MAX)
    }

    /// Six signals for the filter tests, inserted in this order.
    async fn seed(store: &Store) {
        for s in [
            with("a", "EUR_USD", "BUY", 0.50, 0, T0),
            with("b", "BTC-USD", "SELL", 0.85, 1, T0 + 1000),
            with("c", "EUR_USD", "SELL", 0.95, 3, T0 + 2000),
            with("d", "BTC-USD", "BUY", 0.80, 1, T0 + 3000),
            with("e", "EUR_USD", "BUY", 0.90, 2, T0 + 4000),
            with("f", "EUR_USD", "BUY", 0.79, 0, T0 - 5000),
        ] {
            insert_new(store, &s).await;
        }
    }

    // The cases, each against a fresh store.
    mod cases {
        use super::*;

        pub async fn insert_then_query_returns_the_signal(h: &Harness) {
            let store = h.open().await;
            let s = signal("sig_1");
            let arrival = insert_new(&store, &s).await;
            let rows = store.query(&all()).await.unwrap();
            assert_eq!(
                rows,
                vec![StoredSignal {
                    arrival,
                    signal_id: s.signal_id.clone(),
                    record_json: s.record_json.clone(),
                    pair: s.pair.clone(),
                    signal_type: s.signal_type.clone(),
                    confidence: s.confidence,
                    tier_rank: s.tier_rank,
                    timestamp: s.timestamp,
                    answer_json: None,
                    publisher: s.publisher.clone(),
                }]
            );
        }

        pub async fn duplicate_signal_id_returns_the_first_row_and_its_answer(h: &Harness) {
            let store = h.open().await;
            let first = signal("dup");
            let arrival = insert_new(&store, &first).await;

            let second = NewSignal {
                record_json: r#"{"other":true}"#.to_string(),
                confidence: 0.1,
                ..signal("dup")
            };
            let Inserted::Duplicate(row) = store.insert_signal(&second).await.unwrap() else {
                panic!("expected Duplicate");
            };
            assert_eq!(row.arrival, arrival);
            assert_eq!(row.record_json, first.record_json);
            assert_eq!(row.confidence, first.confidence);
            assert_eq!(row.answer_json, None);

            let answer = r#"{"signal_id":"dup","tier":"premium","channels":["signals"],"epoch":"e1","seq":7}"#;
            store.mark_published("dup", answer).await.unwrap();
            let Inserted::Duplicate(row) = store.insert_signal(&second).await.unwrap() else {
                panic!("expected Duplicate");
            };
            assert_eq!(row.answer_json.as_deref(), Some(answer));
            assert_eq!(store.query(&all()).await.unwrap().len(), 1);
        }

        pub async fn mark_published_keeps_the_first_answer(h: &Harness) {
            let store = h.open().await;
            insert_new(&store, &signal("p")).await;
            store.mark_published("p", r#"{"seq":1}"#).await.unwrap();
            store.mark_published("p", r#"{"seq":2}"#).await.unwrap();
            let rows = store.query(&all()).await.unwrap();
            assert_eq!(rows[0].answer_json.as_deref(), Some(r#"{"seq":1}"#));
        }

        pub async fn mark_published_of_an_unknown_signal_is_not_found(h: &Harness) {
            let store = h.open().await;
            let err = store.mark_published("nope", "{}").await.unwrap_err();
            assert_eq!(err, StoreError::NotFound("nope".to_string()));
        }

        pub async fn unpublished_lists_only_unmarked_signals_oldest_first(h: &Harness) {
            let store = h.open().await;
            for id in ["u1", "u2", "u3", "u4"] {
                insert_new(&store, &signal(id)).await;
            }
            store.mark_published("u2", "{}").await.unwrap();
            store.mark_published("u4", "{}").await.unwrap();
            let rows = store.unpublished().await.unwrap();
            assert_eq!(ids(&rows), ["u1", "u3"]);
            assert!(rows.iter().all(|r| r.answer_json.is_none()));
            store.mark_published("u1", "{}").await.unwrap();
            store.mark_published("u3", "{}").await.unwrap();
            assert!(store.unpublished().await.unwrap().is_empty());
        }

        pub async fn query_returns_newest_first_by_arrival(h: &Harness) {
            let store = h.open().await;
            seed(&store).await;
            let rows = store.query(&all()).await.unwrap();
            // By arrival, not by the signal's own timestamp ("f" is the oldest timestamp).
            assert_eq!(ids(&rows), ["f", "e", "d", "c", "b", "a"]);
            assert!(rows.windows(2).all(|w| w[0].arrival > w[1].arrival));
        }

        pub async fn query_filters_by_pair(h: &Harness) {
            let store = h.open().await;
            seed(&store).await;
            let q = SignalQuery {
                pair: Some("BTC-USD".into()),
                ..all()
            };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["d", "b"]);
            let q = SignalQuery {
                pair: Some("btc-usd".into()),
                ..all()
            };
            assert!(store.query(&q).await.unwrap().is_empty(), "exact match");
        }

        pub async fn query_filters_by_signal_type(h: &Harness) {
            let store = h.open().await;
            seed(&store).await;
            let q = SignalQuery {
                signal_type: Some("SELL".into()),
                ..all()
            };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["c", "b"]);
        }

        pub async fn query_filters_by_min_confidence_inclusive(h: &Harness) {
            let store = h.open().await;
            seed(&store).await;
            let q = SignalQuery {
                min_confidence: Some(0.85),
                ..all()
            };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["e", "c", "b"]);
        }

        pub async fn query_filters_by_since_on_the_signal_timestamp(h: &Harness) {
            let store = h.open().await;
            seed(&store).await;
            let q = SignalQuery {
                since: Some(at(T0 + 2000)),
                ..all()
            };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["e", "d", "c"]);
            // A sub-millisecond `since` excludes the millisecond it falls in.
            let q = SignalQuery {
                since: Some(at(T0 + 1999) + chrono::Duration::microseconds(1500)),
                ..all()
            };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["e", "d"]);
        }

        pub async fn query_hides_signals_above_max_tier_rank(h: &Harness) {
            let store = h.open().await;
            seed(&store).await;
            let free = SignalQuery::new(0);
            assert_eq!(ids(&store.query(&free).await.unwrap()), ["f", "a"]);
            let premium = SignalQuery::new(1);
            assert_eq!(
                ids(&store.query(&premium).await.unwrap()),
                ["f", "d", "b", "a"]
            );
            let holder = SignalQuery::new(2);
            assert_eq!(
                ids(&store.query(&holder).await.unwrap()),
                ["f", "e", "d", "b", "a"]
            );
        }

        pub async fn query_combines_filters(h: &Harness) {
            let store = h.open().await;
            seed(&store).await;
            let q = SignalQuery {
                pair: Some("EUR_USD".into()),
                signal_type: Some("BUY".into()),
                min_confidence: Some(0.5),
                since: Some(at(T0)),
                max_tier_rank: 2,
                limit: 10,
            };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["e", "a"]);
            let q = SignalQuery {
                max_tier_rank: 1,
                ..q
            };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["a"]);
        }

        pub async fn query_limit_keeps_the_newest(h: &Harness) {
            let store = h.open().await;
            seed(&store).await;
            let q = SignalQuery { limit: 2, ..all() };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["f", "e"]);
            let q = SignalQuery { limit: 0, ..all() };
            assert_eq!(ids(&store.query(&q).await.unwrap()), ["f"], "0 clamps to 1");
            let q = SignalQuery {
                limit: u32::MAX,
                ..all()
            };
            assert_eq!(store.query(&q).await.unwrap().len(), 6);
        }

        pub async fn signals_survive_reopening_the_store(h: &Harness) {
            let store = h.open().await;
            insert_new(&store, &signal("keep")).await;
            store.mark_published("keep", r#"{"seq":1}"#).await.unwrap();
            insert_new(&store, &signal("pending")).await;
            store.set_user_tier("u_1", Some("whale")).await.unwrap();
            drop(store);

            let store = h.open().await;
            let rows = store.query(&all()).await.unwrap();
            assert_eq!(ids(&rows), ["pending", "keep"]);
            assert_eq!(rows[1].answer_json.as_deref(), Some(r#"{"seq":1}"#));
            assert_eq!(ids(&store.unpublished().await.unwrap()), ["pending"]);
            assert_eq!(
                store.user_tier("u_1").await.unwrap().as_deref(),
                Some("whale")
            );
            let Inserted::Duplicate(_) = store.insert_signal(&signal("keep")).await.unwrap() else {
                panic!("signal_id must stay unique across reopening");
            };
        }

        pub async fn migrations_are_idempotent_when_opened_twice(h: &Harness) {
            let first = h.open().await;
            insert_new(&first, &signal("m")).await;
            let second = h.open().await;
            assert_eq!(
                first.schema_version().await.unwrap(),
                migrations::LATEST_VERSION
            );
            assert_eq!(
                second.schema_version().await.unwrap(),
                migrations::LATEST_VERSION
            );
            assert_eq!(ids(&second.query(&all()).await.unwrap()), ["m"]);
            drop(first);
            drop(second);
            let third = h.open().await;
            assert_eq!(ids(&third.query(&all()).await.unwrap()), ["m"]);
        }

        pub async fn user_tier_set_clear_and_list(h: &Harness) {
            let store = h.open().await;
            assert_eq!(store.user_tier("u_1").await.unwrap(), None);
            assert!(store.user_tiers().await.unwrap().is_empty());
            store.set_user_tier("u_2", Some("premium")).await.unwrap();
            store.set_user_tier("u_1", Some("free")).await.unwrap();
            store.set_user_tier("u_1", Some("whale")).await.unwrap();
            assert_eq!(
                store.user_tier("u_1").await.unwrap().as_deref(),
                Some("whale")
            );
            assert_eq!(
                store.user_tiers().await.unwrap(),
                vec![
                    ("u_1".to_string(), "whale".to_string()),
                    ("u_2".to_string(), "premium".to_string())
                ]
            );
            store.set_user_tier("u_1", None).await.unwrap();
            store.set_user_tier("nobody", None).await.unwrap();
            assert_eq!(store.user_tier("u_1").await.unwrap(), None);
            assert_eq!(
                store.user_tiers().await.unwrap(),
                vec![("u_2".to_string(), "premium".to_string())]
            );
        }

        pub async fn ping_succeeds_on_a_healthy_store(h: &Harness) {
            let store = h.open().await;
            store.ping().await.unwrap();
        }

        pub async fn concurrent_inserts_of_one_signal_id_store_it_once(h: &Harness) {
            let store = h.open().await;
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store.insert_signal(&signal("race")).await
                }));
            }
            let mut new = 0;
            for t in tasks {
                if let Inserted::New { .. } = t.await.unwrap().unwrap() {
                    new += 1;
                }
            }
            assert_eq!(new, 1);
            assert_eq!(ids(&store.query(&all()).await.unwrap()), ["race"]);
        }
    }

    /// For each case: `sqlite::<case>` and `postgres::<case>`.
    macro_rules! conformance {
        ($($case:ident),* $(,)?) => {
            mod sqlite {
                use super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let h = Harness::sqlite();
                        cases::$case(&h).await;
                    }
                )*
            }
            mod postgres {
                use super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let Some(h) = Harness::postgres().await else { return };
                        cases::$case(&h).await;
                        h.cleanup().await;
                    }
                )*
            }
        };
    }

    conformance!(
        insert_then_query_returns_the_signal,
        duplicate_signal_id_returns_the_first_row_and_its_answer,
        mark_published_keeps_the_first_answer,
        mark_published_of_an_unknown_signal_is_not_found,
        unpublished_lists_only_unmarked_signals_oldest_first,
        query_returns_newest_first_by_arrival,
        query_filters_by_pair,
        query_filters_by_signal_type,
        query_filters_by_min_confidence_inclusive,
        query_filters_by_since_on_the_signal_timestamp,
        query_hides_signals_above_max_tier_rank,
        query_combines_filters,
        query_limit_keeps_the_newest,
        signals_survive_reopening_the_store,
        migrations_are_idempotent_when_opened_twice,
        user_tier_set_clear_and_list,
        ping_succeeds_on_a_healthy_store,
        concurrent_inserts_of_one_signal_id_store_it_once,
    );

    // Backend-specific behaviour.

    #[tokio::test]
    async fn sqlite_file_store_uses_wal_and_synchronous_full() {
        let h = Harness::sqlite();
        let Store::Sqlite(store) = h.open().await else {
            panic!("sqlite")
        };
        let (journal, synchronous) = store.writer_pragmas().await.unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "FULL");
    }

    #[tokio::test]
    async fn sqlite_memory_store_is_one_shared_connection_that_keeps_nothing() {
        let url = StoreUrl::Sqlite(":memory:".to_string());
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        insert_new(&store, &signal("mem")).await;
        assert_eq!(ids(&store.query(&all()).await.unwrap()), ["mem"]);
        assert_eq!(ids(&store.unpublished().await.unwrap()), ["mem"]);
        let other = Store::open(&url).await.unwrap();
        assert!(other.query(&all()).await.unwrap().is_empty());
        assert!(!std::path::Path::new(":memory:").exists());
    }

    #[tokio::test]
    async fn sqlite_locked_database_answers_unavailable_within_the_busy_timeout() {
        let mut h = Harness::sqlite();
        h.options.busy_timeout = Duration::from_millis(300);
        let store = h.open().await;
        let StoreUrl::Sqlite(path) = &h.url else {
            unreachable!()
        };
        let other = rusqlite::Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        let started = Instant::now();
        let err = hang_guard(store.insert_signal(&signal("locked")))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        println!("answered after {:?}", started.elapsed());

        other.execute_batch("ROLLBACK").unwrap();
        insert_new(&store, &signal("locked")).await;
    }

    #[tokio::test]
    async fn sqlite_refuses_a_database_with_a_newer_schema() {
        let h = Harness::sqlite();
        drop(h.open().await);
        let StoreUrl::Sqlite(path) = &h.url else {
            unreachable!()
        };
        let raw = rusqlite::Connection::open(path).unwrap();
        raw.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', '')",
            [],
        )
        .unwrap();
        drop(raw);
        let err = Store::open(&h.url).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Config(m) if m.contains("999")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn sqlite_row_that_does_not_decode_is_corrupt() {
        let h = Harness::sqlite();
        let store = h.open().await;
        insert_new(&store, &signal("bad")).await;
        let StoreUrl::Sqlite(path) = &h.url else {
            unreachable!()
        };
        let raw = rusqlite::Connection::open(path).unwrap();
        raw.execute("UPDATE signals SET tier_rank = -1", [])
            .unwrap();
        drop(raw);
        let err = store.query(&all()).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn sqlite_file_in_a_missing_directory_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/signals.db");
        let url = StoreUrl::Sqlite(path.to_string_lossy().into_owned());
        let err = hang_guard(Store::open(&url)).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn bad_postgres_url_is_a_config_error() {
        for url in [
            "postgres://127.0.0.1:notaport/db",
            "postgres://127.0.0.1/db?sslmode=require",
        ] {
            let err = Store::open(&StoreUrl::Postgres(url.to_string()))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Config(_)), "{url}: {err:?}");
        }
    }

    #[tokio::test]
    async fn unreachable_postgres_is_unavailable_within_the_connect_timeout() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = StoreUrl::Postgres(format!("postgres://postgres@127.0.0.1:{port}/db"));
        let started = Instant::now();
        let err = hang_guard(Store::open(&url)).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        println!("answered after {:?}", started.elapsed());
    }

    #[test]
    fn store_and_its_futures_are_send_for_axum_handlers() {
        fn send_sync<T: Send + Sync>() {}
        fn send<F: Send>(_: F) {}
        send_sync::<Store>();
        send_sync::<StoreError>();
        fn futures(s: &Store, n: &NewSignal, q: &SignalQuery, url: &StoreUrl) {
            send(Store::open(url));
            send(s.insert_signal(n));
            send(s.mark_published("id", "{}"));
            send(s.unpublished());
            send(s.query(q));
            send(s.set_user_tier("u", None));
            send(s.user_tier("u"));
            send(s.user_tiers());
            send(s.ping());
        }
        let _ = futures;
    }

    #[test]
    fn since_rounds_sub_millisecond_instants_up() {
        assert_eq!(since_millis(at(T0)), T0);
        assert_eq!(
            since_millis(at(T0) + chrono::Duration::nanoseconds(1)),
            T0 + 1
        );
        assert_eq!(
            since_millis(at(-1) + chrono::Duration::microseconds(500)),
            0
        );
    }

    #[test]
    fn query_sql_names_only_the_filters_that_are_set() {
        let (sql, params) = query_sql(&SignalQuery::new(1), |n| format!("${n}"));
        assert!(
            sql.ends_with("WHERE tier_rank <= $1 ORDER BY arrival DESC LIMIT $2"),
            "{sql}"
        );
        assert_eq!(params, vec![Param::Rank(1), Param::Int(100)]);
    }

    /// Runs `$SIGNALHUB_TEST_POSTGRES_CTL <verb>` (the CTL is "path/to/postgres.sh DIR").
    fn postgres_ctl(ctl: &str, verb: &str) {
        let mut words = ctl.split_whitespace();
        let script = words.next().expect("SIGNALHUB_TEST_POSTGRES_CTL is empty");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(verb)
            .args(words)
            .output()
            .expect("run SIGNALHUB_TEST_POSTGRES_CTL");
        assert!(
            out.status.success(),
            "{ctl} {verb}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `$SIGNALHUB_TEST_POSTGRES_CTL <verb>` when dropped, so that a test that stopped or
    /// froze the cluster leaves it running even when it panics.
    struct CtlOnDrop<'a>(&'a str, &'static str);

    impl Drop for CtlOnDrop<'_> {
        fn drop(&mut self) {
            postgres_ctl(self.0, self.1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_outage_answers_unavailable_promptly_then_recovers_after_restart() {
        let Some(base) = external("SIGNALHUB_TEST_POSTGRES") else {
            return;
        };
        let Some(ctl) = external("SIGNALHUB_TEST_POSTGRES_CTL") else {
            return;
        };
        let _exclusive = EXTERNAL_POSTGRES.write().await;
        let h = Harness::postgres_at(&base).await;
        let store = h.open().await;
        insert_new(&store, &signal("before")).await;
        store.ping().await.unwrap();

        {
            let _restart = CtlOnDrop(&ctl, "start");
            postgres_ctl(&ctl, "stop");
            for attempt in 0..3 {
                let started = Instant::now();
                let err = hang_guard(store.insert_signal(&signal("during")))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, StoreError::Unavailable(_)),
                    "{attempt}: {err:?}"
                );
                println!(
                    "outage attempt {attempt}: {err} after {:?}",
                    started.elapsed()
                );
            }
            let err = hang_guard(store.ping()).await.unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            let err = store.query(&all()).await.unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        }

        // Started again by the guard: the same store works without reopening.
        store.ping().await.unwrap();
        insert_new(&store, &signal("after")).await;
        assert_eq!(
            ids(&store.query(&all()).await.unwrap()),
            ["after", "before"]
        );
        drop(store);
        h.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_frozen_server_answers_unavailable_within_the_timeouts_then_recovers() {
        let Some(base) = external("SIGNALHUB_TEST_POSTGRES") else {
            return;
        };
        let Some(ctl) = external("SIGNALHUB_TEST_POSTGRES_CTL") else {
            return;
        };
        let _exclusive = EXTERNAL_POSTGRES.write().await;
        let mut h = Harness::postgres_at(&base).await;
        h.options.operation_timeout = Duration::from_secs(1);
        h.options.connect_timeout = Duration::from_millis(500);
        let store = h.open().await;
        insert_new(&store, &signal("before")).await;

        {
            let _thaw = CtlOnDrop(&ctl, "thaw");
            postgres_ctl(&ctl, "freeze");
            // The pooled connection gets no answer: the operation timeout ends the wait.
            let started = Instant::now();
            let err = hang_guard(store.insert_signal(&signal("during")))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            println!("answered after {:?}", started.elapsed());
            // That connection was dropped; a new one cannot start: the connect timeout.
            let started = Instant::now();
            let err = hang_guard(store.ping()).await.unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            println!("answered after {:?}", started.elapsed());
        }

        store.ping().await.unwrap();
        // The timed-out insert may have reached the server: a retry is New, or Duplicate
        // with no answer yet (the caller then publishes it).
        match store.insert_signal(&signal("during")).await.unwrap() {
            Inserted::New { .. } => {}
            Inserted::Duplicate(row) => assert_eq!(row.answer_json, None),
        }
        let rows = store.query(&all()).await.unwrap();
        assert_eq!(ids(&rows), ["during", "before"]);
        drop(store);
        h.cleanup().await;
    }
}
