//! SQLite backend (rusqlite, bundled SQLite): one writer connection plus a few read-only
//! readers for a file in WAL mode with `synchronous=FULL`, or one shared connection for
//! `:memory:`. Blocking calls run on tokio's blocking pool; waits for a connection and whole
//! operations are bounded by [`StoreOptions`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rusqlite::{params, params_from_iter, Connection, ErrorCode, OpenFlags, OptionalExtension};
use tokio::sync::Mutex;

use super::migrations::{self, MIGRATIONS};
use super::{
    now_text, query_sql, Inserted, NewSignal, Param, RawSignal, SignalQuery, StoreError,
    StoreOptions, StoredSignal, SIGNAL_COLUMNS,
};

/// A SQLite store; cheap to clone (shared connections).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: String,
    options: StoreOptions,
    writer: Arc<Mutex<Connection>>,
    /// Empty for `:memory:`: everything goes through the writer.
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("readers", &self.inner.readers.len())
            .finish()
    }
}

const MEMORY: &str = ":memory:";

impl SqliteStore {
    pub(super) async fn open(
        path: &str,
        options: &StoreOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.to_string();
        let options = options.clone();
        tokio::task::spawn_blocking(move || open_blocking(path, options))
            .await
            .map_err(|e| StoreError::Unavailable(format!("sqlite open task failed: {e}")))?
    }

    pub(super) async fn insert_signal(&self, s: &NewSignal) -> Result<Inserted, StoreError> {
        let s = s.clone();
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO signals \
                     (signal_id, record_json, pair, signal_type, confidence, tier_rank, ts_ms, \
                      publisher) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (signal_id) DO NOTHING",
                )?
                .execute(params![
                    s.signal_id,
                    s.record_json,
                    s.pair,
                    s.signal_type,
                    s.confidence,
                    s.tier_rank,
                    s.timestamp.timestamp_millis(),
                    s.publisher,
                ])?;
            if inserted == 1 {
                return Ok(Inserted::New {
                    arrival: conn.last_insert_rowid(),
                });
            }
            match signal_by_id(conn, &s.signal_id)? {
                Some(row) => Ok(Inserted::Duplicate(row)),
                None => Err(StoreError::Corrupt(format!(
                    "signal {:?}: insert conflicted but no row exists",
                    s.signal_id
                ))),
            }
        })
        .await
    }

    pub(super) async fn mark_published(
        &self,
        signal_id: &str,
        answer_json: &str,
    ) -> Result<(), StoreError> {
        let (signal_id, answer_json) = (signal_id.to_string(), answer_json.to_string());
        self.write(move |conn| {
            let updated = conn
                .prepare_cached(
                    "UPDATE signals SET answer_json = ?2 \
                     WHERE signal_id = ?1 AND answer_json IS NULL",
                )?
                .execute(params![signal_id, answer_json])?;
            if updated == 0 && signal_by_id(conn, &signal_id)?.is_none() {
                return Err(StoreError::NotFound(signal_id));
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn unpublished(&self) -> Result<Vec<StoredSignal>, StoreError> {
        self.read(|conn| {
            let sql = format!(
                "SELECT {SIGNAL_COLUMNS} FROM signals WHERE answer_json IS NULL ORDER BY arrival"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([], raw_signal)?;
            collect(rows)
        })
        .await
    }

    pub(super) async fn query(&self, q: &SignalQuery) -> Result<Vec<StoredSignal>, StoreError> {
        let (sql, params) = query_sql(q, |n| format!("?{n}"));
        self.read(move |conn| {
            let values = params.into_iter().map(|p| match p {
                Param::Text(s) => rusqlite::types::Value::Text(s),
                Param::Real(f) => rusqlite::types::Value::Real(f),
                Param::Int(i) => rusqlite::types::Value::Integer(i),
                Param::Rank(r) => rusqlite::types::Value::Integer(i64::from(r)),
            });
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(values), raw_signal)?;
            collect(rows)
        })
        .await
    }

    pub(super) async fn set_user_tier(
        &self,
        user: &str,
        tier: Option<&str>,
    ) -> Result<(), StoreError> {
        let (user, tier) = (user.to_string(), tier.map(str::to_string));
        self.write(move |conn| {
            match tier {
                Some(tier) => conn
                    .prepare_cached(
                        "INSERT INTO user_tiers (user_id, tier) VALUES (?1, ?2) \
                         ON CONFLICT (user_id) DO UPDATE SET tier = excluded.tier, \
                         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                    )?
                    .execute(params![user, tier])?,
                None => conn
                    .prepare_cached("DELETE FROM user_tiers WHERE user_id = ?1")?
                    .execute(params![user])?,
            };
            Ok(())
        })
        .await
    }

    pub(super) async fn user_tier(&self, user: &str) -> Result<Option<String>, StoreError> {
        let user = user.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT tier FROM user_tiers WHERE user_id = ?1")?
                .query_row(params![user], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    pub(super) async fn user_tiers(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT user_id, tier FROM user_tiers ORDER BY user_id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.schema_version().await.map(|_| ())
    }

    pub(super) async fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(|conn| {
            let version: Option<i64> = conn
                .prepare_cached("SELECT max(version) FROM schema_migrations")?
                .query_row([], |r| r.get(0))?;
            version
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| StoreError::Corrupt("schema_migrations is empty".to_string()))
        })
        .await
    }

    /// `(journal_mode, synchronous)` of the writer connection.
    #[cfg(test)]
    pub(super) async fn writer_pragmas(&self) -> Result<(String, i64), StoreError> {
        self.write(|conn| {
            let journal = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let synchronous = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            Ok((journal, synchronous))
        })
        .await
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(&self.inner.writer, f).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = &self.inner.readers;
        if readers.is_empty() {
            return self.run(&self.inner.writer, f).await;
        }
        let i = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        self.run(&readers[i], f).await
    }

    /// Locks `conn` (at most `acquire_timeout`), then runs `f` on the blocking pool (at most
    /// `operation_timeout`; past it the caller gets `Unavailable` while `f` finishes alone).
    async fn run<T, F>(&self, conn: &Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let options = &self.inner.options;
        let mut guard = tokio::time::timeout(options.acquire_timeout, conn.clone().lock_owned())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "sqlite {}: no connection free within {:?}",
                    self.inner.path, options.acquire_timeout
                ))
            })?;
        let task = tokio::task::spawn_blocking(move || f(&mut guard));
        match tokio::time::timeout(options.operation_timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("sqlite task failed: {e}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "sqlite {}: operation did not finish within {:?}",
                self.inner.path, options.operation_timeout
            ))),
        }
    }
}

fn open_blocking(path: String, options: StoreOptions) -> Result<SqliteStore, StoreError> {
    let open_error = |e: rusqlite::Error| {
        let err = StoreError::from(e);
        match err {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("sqlite {path}: {m}")),
            other => other,
        }
    };
    let (writer, readers) = if path == MEMORY {
        let mut conn = Connection::open_in_memory().map_err(open_error)?;
        migrate(&mut conn)?;
        (conn, Vec::new())
    } else {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(open_error)?;
        conn.busy_timeout(options.busy_timeout)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Config(format!(
                "sqlite {path}: WAL journal mode refused (got {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut conn)?;
        let mut readers = Vec::with_capacity(options.sqlite_readers);
        for _ in 0..options.sqlite_readers {
            let reader = Connection::open_with_flags(&path, flags).map_err(open_error)?;
            reader.busy_timeout(options.busy_timeout)?;
            reader.pragma_update(None, "query_only", true)?;
            readers.push(Arc::new(Mutex::new(reader)));
        }
        (conn, readers)
    };
    Ok(SqliteStore {
        inner: Arc::new(Inner {
            path,
            options,
            writer: Arc::new(Mutex::new(writer)),
            readers,
            next_reader: AtomicUsize::new(0),
        }),
    })
}

/// Applies pending migrations, each in an immediate (write-locked) transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(migrations::SCHEMA_TABLE)?;
    for m in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let newest: Option<i64> =
            tx.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })?;
        if let Some(newest) = newest {
            if newest > i64::from(migrations::LATEST_VERSION) {
                return Err(StoreError::Config(migrations::newer_schema_message(newest)));
            }
            if newest >= i64::from(m.version) {
                continue;
            }
        }
        tx.execute_batch(m.sqlite)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_text()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

fn signal_by_id(conn: &Connection, signal_id: &str) -> Result<Option<StoredSignal>, StoreError> {
    let sql = format!("SELECT {SIGNAL_COLUMNS} FROM signals WHERE signal_id = ?1");
    conn.prepare_cached(&sql)?
        .query_row(params![signal_id], raw_signal)
        .optional()?
        .map(RawSignal::decode)
        .transpose()
}

fn raw_signal(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSignal> {
    Ok(RawSignal {
        arrival: r.get(0)?,
        signal_id: r.get(1)?,
        record_json: r.get(2)?,
        pair: r.get(3)?,
        signal_type: r.get(4)?,
        confidence: r.get(5)?,
        tier_rank: r.get(6)?,
        ts_ms: r.get(7)?,
        answer_json: r.get(8)?,
        publisher: r.get(9)?,
    })
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<RawSignal>>,
) -> Result<Vec<StoredSignal>, StoreError> {
    rows.map(|r| r.map_err(StoreError::from).and_then(RawSignal::decode))
        .collect()
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::Error as E;
        match &e {
            E::SqliteFailure(f, _) => match f.code {
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    StoreError::Corrupt(format!("sqlite: {e}"))
                }
                _ => StoreError::Unavailable(format!("sqlite: {e}")),
            },
            E::FromSqlConversionFailure(..)
            | E::IntegralValueOutOfRange(..)
            | E::InvalidColumnType(..)
            | E::Utf8Error(..) => StoreError::Corrupt(format!("sqlite: {e}")),
            _ => StoreError::Unavailable(format!("sqlite: {e}")),
        }
    }
}
