//! PostgreSQL backend (tokio-postgres, no TLS, pooled by deadpool-postgres): short acquire
//! and connect timeouts so an outage answers promptly, and connections that died with the
//! server are dropped by the pool and replaced on the next use.

use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};

use super::migrations::{self, MIGRATIONS};
use super::{
    now_text, query_sql, Inserted, NewSignal, Param, RawSignal, SignalQuery, StoreError,
    StoreOptions, StoredSignal, SIGNAL_COLUMNS,
};

/// Key of the advisory lock that serializes migrations between processes ("SGNLHUB1").
const MIGRATION_LOCK: i64 = 0x5347_4e4c_4855_4231;

/// A PostgreSQL store; cheap to clone (a shared pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    operation_timeout: Duration,
    /// `host:port/dbname`, for messages (never the password).
    target: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish()
    }
}

impl PostgresStore {
    pub(super) async fn open(
        url: &str,
        options: &StoreOptions,
    ) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(StoreError::Config(
                "PostgreSQL URL asks for sslmode=require, but this build has no TLS".to_string(),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("signalhub");
        }
        let target = describe(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.acquire_timeout))
            .build()
            .map_err(|e| StoreError::Config(format!("PostgreSQL pool: {e}")))?;
        let store = PostgresStore {
            pool,
            operation_timeout: options.operation_timeout,
            target,
        };
        store.timed(store.migrate()).await?;
        Ok(store)
    }

    /// Applies pending migrations in one transaction, under an advisory lock.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let out = migrate(&mut client).await;
        client.finish(out)
    }

    pub(super) async fn insert_signal(&self, s: &NewSignal) -> Result<Inserted, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let out = insert_signal(&client, s).await;
            client.finish(out)
        })
        .await
    }

    pub(super) async fn mark_published(
        &self,
        signal_id: &str,
        answer_json: &str,
    ) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let out = mark_published(&client, signal_id, answer_json).await;
            client.finish(out)
        })
        .await
    }

    pub(super) async fn unpublished(&self) -> Result<Vec<StoredSignal>, StoreError> {
        let sql = format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals WHERE answer_json IS NULL ORDER BY arrival"
        );
        self.timed(async {
            let client = self.client().await?;
            let out = query_signals(&client, &sql, &[]).await;
            client.finish(out)
        })
        .await
    }

    pub(super) async fn query(&self, q: &SignalQuery) -> Result<Vec<StoredSignal>, StoreError> {
        let (sql, params) = query_sql(q, |n| format!("${n}"));
        let values: Vec<PgParam> = params.into_iter().map(PgParam::from).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(PgParam::as_sql).collect();
        self.timed(async {
            let client = self.client().await?;
            let out = query_signals(&client, &sql, &refs).await;
            client.finish(out)
        })
        .await
    }

    pub(super) async fn set_user_tier(
        &self,
        user: &str,
        tier: Option<&str>,
    ) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let out = set_user_tier(&client, user, tier).await;
            client.finish(out)
        })
        .await
    }

    pub(super) async fn user_tier(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let out = user_tier(&client, user).await;
            client.finish(out)
        })
        .await
    }

    pub(super) async fn user_tiers(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let out = user_tiers(&client).await;
            client.finish(out)
        })
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let out = client
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(StoreError::from);
            client.finish(out)
        })
        .await
    }

    pub(super) async fn schema_version(&self) -> Result<u32, StoreError> {
        self.timed(async {
            let client = self.client().await?;
            let out = schema_version(&client).await;
            client.finish(out)
        })
        .await
    }

    async fn client(&self) -> Result<Lease, StoreError> {
        let object = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        Ok(Lease {
            object: Some(object),
        })
    }

    /// Bounds a whole operation by `operation_timeout`.
    async fn timed<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.operation_timeout, op)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "postgres {}: no answer within {:?}",
                    self.target, self.operation_timeout
                ))
            })?
    }

    fn pool_error(&self, e: PoolError) -> StoreError {
        match e {
            PoolError::Backend(e) => {
                let err = StoreError::from(e);
                match err {
                    StoreError::Unavailable(m) => {
                        StoreError::Unavailable(format!("postgres {}: {m}", self.target))
                    }
                    other => other,
                }
            }
            PoolError::Timeout(kind) => StoreError::Unavailable(format!(
                "postgres {}: connection pool timed out ({kind:?})",
                self.target
            )),
            other => StoreError::Unavailable(format!("postgres {}: {other}", self.target)),
        }
    }
}

/// Applies pending migrations in one transaction, under an advisory lock.
async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(migrations::SCHEMA_TABLE).await?;
    let row = tx
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await?;
    let newest: Option<i32> = col(&row, 0)?;
    let newest = i64::from(newest.unwrap_or(0));
    if newest > i64::from(migrations::LATEST_VERSION) {
        return Err(StoreError::Config(migrations::newer_schema_message(newest)));
    }
    for m in MIGRATIONS.iter().filter(|m| i64::from(m.version) > newest) {
        tx.batch_execute(m.postgres).await?;
        let version = i32::try_from(m.version).expect("migration versions are small");
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&version, &m.name, &now_text()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_signal(client: &Object, s: &NewSignal) -> Result<Inserted, StoreError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO signals \
             (signal_id, record_json, pair, signal_type, confidence, tier_rank, ts_ms, \
              publisher) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (signal_id) DO NOTHING RETURNING arrival",
        )
        .await?;
    let rank = i16::from(s.tier_rank);
    let ts_ms = s.timestamp.timestamp_millis();
    let row = client
        .query_opt(
            &stmt,
            &[
                &s.signal_id,
                &s.record_json,
                &s.pair,
                &s.signal_type,
                &s.confidence,
                &rank,
                &ts_ms,
                &s.publisher,
            ],
        )
        .await?;
    if let Some(row) = row {
        return Ok(Inserted::New {
            arrival: col(&row, 0)?,
        });
    }
    match signal_by_id(client, &s.signal_id).await? {
        Some(stored) => Ok(Inserted::Duplicate(stored)),
        None => Err(StoreError::Corrupt(format!(
            "signal {:?}: insert conflicted but no row exists",
            s.signal_id
        ))),
    }
}

async fn mark_published(
    client: &Object,
    signal_id: &str,
    answer_json: &str,
) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "UPDATE signals SET answer_json = $2 WHERE signal_id = $1 AND answer_json IS NULL",
        )
        .await?;
    let updated = client.execute(&stmt, &[&signal_id, &answer_json]).await?;
    if updated == 0 && signal_by_id(client, signal_id).await?.is_none() {
        return Err(StoreError::NotFound(signal_id.to_string()));
    }
    Ok(())
}

async fn query_signals(
    client: &Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<StoredSignal>, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    decode_all(client.query(&stmt, params).await?)
}

async fn set_user_tier(client: &Object, user: &str, tier: Option<&str>) -> Result<(), StoreError> {
    match tier {
        Some(tier) => {
            let stmt = client
                .prepare_cached(
                    "INSERT INTO user_tiers (user_id, tier) VALUES ($1, $2) \
                     ON CONFLICT (user_id) DO UPDATE SET tier = excluded.tier, updated_at = now()",
                )
                .await?;
            client.execute(&stmt, &[&user, &tier]).await?;
        }
        None => {
            let stmt = client
                .prepare_cached("DELETE FROM user_tiers WHERE user_id = $1")
                .await?;
            client.execute(&stmt, &[&user]).await?;
        }
    }
    Ok(())
}

async fn user_tier(client: &Object, user: &str) -> Result<Option<String>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT tier FROM user_tiers WHERE user_id = $1")
        .await?;
    match client.query_opt(&stmt, &[&user]).await? {
        Some(row) => Ok(Some(col(&row, 0)?)),
        None => Ok(None),
    }
}

async fn user_tiers(client: &Object) -> Result<Vec<(String, String)>, StoreError> {
    let stmt = client
        .prepare_cached("SELECT user_id, tier FROM user_tiers ORDER BY user_id")
        .await?;
    let rows = client.query(&stmt, &[]).await?;
    rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
}

async fn schema_version(client: &Object) -> Result<u32, StoreError> {
    let row = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await?;
    let version: Option<i32> = col(&row, 0)?;
    version
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| StoreError::Corrupt("schema_migrations is empty".to_string()))
}

/// A pooled connection for one operation. [`Lease::finish`] returns it to the pool; dropped
/// without that (a connection error, or the operation timed out mid-query), the connection is
/// closed instead, so a connection stuck on a frozen server or a black-holed network is not reused.
struct Lease {
    object: Option<Object>,
}

impl Lease {
    /// Returns the connection to the pool unless `out` says it may be broken
    /// ([`StoreError::Unavailable`]), then passes `out` on.
    fn finish<T>(mut self, out: Result<T, StoreError>) -> Result<T, StoreError> {
        if !matches!(out, Err(StoreError::Unavailable(_))) {
            self.object = None;
        }
        out
    }
}

impl std::ops::Deref for Lease {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.object
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Object {
        self.object
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            drop(Object::take(object));
        }
    }
}

/// A [`Param`] as a PostgreSQL value (`tier_rank` is `SMALLINT`).
enum PgParam {
    Text(String),
    Real(f64),
    Int(i64),
    Small(i16),
}

impl From<Param> for PgParam {
    fn from(p: Param) -> PgParam {
        match p {
            Param::Text(s) => PgParam::Text(s),
            Param::Real(f) => PgParam::Real(f),
            Param::Int(i) => PgParam::Int(i),
            Param::Rank(r) => PgParam::Small(i16::from(r)),
        }
    }
}

impl PgParam {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            PgParam::Text(s) => s,
            PgParam::Real(f) => f,
            PgParam::Int(i) => i,
            PgParam::Small(i) => i,
        }
    }
}

async fn signal_by_id(
    client: &Object,
    signal_id: &str,
) -> Result<Option<StoredSignal>, StoreError> {
    let sql = format!("SELECT {SIGNAL_COLUMNS} FROM signals WHERE signal_id = $1");
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query_opt(&stmt, &[&signal_id])
        .await?
        .map(|row| raw_signal(&row).and_then(RawSignal::decode))
        .transpose()
}

fn raw_signal(r: &Row) -> Result<RawSignal, StoreError> {
    Ok(RawSignal {
        arrival: col(r, 0)?,
        signal_id: col(r, 1)?,
        record_json: col(r, 2)?,
        pair: col(r, 3)?,
        signal_type: col(r, 4)?,
        confidence: col(r, 5)?,
        tier_rank: i64::from(col::<i16>(r, 6)?),
        ts_ms: col(r, 7)?,
        answer_json: col(r, 8)?,
        publisher: col(r, 9)?,
    })
}

/// Column `idx` of `row`; a value of the wrong type or out of range is `Corrupt`.
fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| StoreError::Corrupt(format!("column {idx}: {}", full_message(&e))))
}

fn decode_all(rows: Vec<Row>) -> Result<Vec<StoredSignal>, StoreError> {
    rows.iter()
        .map(|r| raw_signal(r).and_then(RawSignal::decode))
        .collect()
}

/// `host:port/dbname` of a connection config.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        let Some(db) = e.as_db_error() else {
            // No server answer: IO error, closed connection, connect timeout. (Row decoding
            // goes through `col`, which reports `Corrupt`.)
            let text = full_message(&e);
            return StoreError::Unavailable(text);
        };
        let code = db.code();
        let text = format!("{} ({})", db.message(), code.code());
        let class = &code.code()[..2];
        if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
            StoreError::Corrupt(text)
        } else if class == "42" {
            // Undefined table/column, syntax: the schema is not what the migrations made.
            StoreError::Corrupt(format!("unexpected schema: {text}"))
        } else {
            // 08 connection, 53 resources, 57 operator intervention (shutdown), 40 rollback,
            // 58 system/IO, and anything else a retry may fix.
            StoreError::Unavailable(text)
        }
    }
}

fn full_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
