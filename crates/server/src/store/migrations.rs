//! Versioned schema migrations for both backends, applied in order at start and recorded in
//! `schema_migrations` (one row per applied version), so that opening a store twice changes
//! nothing the second time.
//!
//! Rules for adding one: append a [`Migration`] with the next version; never edit or reorder
//! an applied one. A database whose newest recorded version is above [`LATEST_VERSION`] was
//! written by a newer build and is refused (`StoreError::Config`) rather than misread.

/// One schema step, written once per backend dialect.
pub(crate) struct Migration {
    /// 1, 2, 3, ... in order.
    pub(crate) version: u32,
    /// A short description, recorded beside the version.
    pub(crate) name: &'static str,
    /// SQLite statements (run with `execute_batch` inside the migration's transaction).
    pub(crate) sqlite: &'static str,
    /// PostgreSQL statements (run with `batch_execute` inside the migration's transaction).
    pub(crate) postgres: &'static str,
}

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "signals and user tier overrides",
        sqlite: r#"
CREATE TABLE signals (
    arrival      INTEGER PRIMARY KEY AUTOINCREMENT,
    signal_id    TEXT    NOT NULL UNIQUE,
    record_json  TEXT    NOT NULL,
    pair         TEXT    NOT NULL,
    signal_type  TEXT    NOT NULL,
    confidence   REAL    NOT NULL,
    tier_rank    INTEGER NOT NULL,
    ts_ms        INTEGER NOT NULL,
    answer_json  TEXT
);
CREATE INDEX signals_pair_arrival ON signals (pair, arrival);
CREATE INDEX signals_unpublished ON signals (arrival) WHERE answer_json IS NULL;
CREATE TABLE user_tiers (
    user_id     TEXT PRIMARY KEY,
    tier        TEXT NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"#,
        postgres: r#"
CREATE TABLE signals (
    arrival      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    signal_id    TEXT             NOT NULL UNIQUE,
    record_json  TEXT             NOT NULL,
    pair         TEXT             NOT NULL,
    signal_type  TEXT             NOT NULL,
    confidence   DOUBLE PRECISION NOT NULL,
    tier_rank    SMALLINT         NOT NULL,
    ts_ms        BIGINT           NOT NULL,
    answer_json  TEXT
);
CREATE INDEX signals_pair_arrival ON signals (pair, arrival);
CREATE INDEX signals_unpublished ON signals (arrival) WHERE answer_json IS NULL;
CREATE TABLE user_tiers (
    user_id     TEXT PRIMARY KEY,
    tier        TEXT        NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
"#,
    },
    Migration {
        version: 2,
        name: "the publisher that stored each signal",
        sqlite: "ALTER TABLE signals ADD COLUMN publisher TEXT;",
        postgres: "ALTER TABLE signals ADD COLUMN publisher TEXT;",
    },
];

/// The newest version this build knows.
pub(crate) const LATEST_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The table recording applied versions (same text for both dialects).
pub(crate) const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)";

/// The message for a database written by a newer build.
pub(crate) fn newer_schema_message(found: i64) -> String {
    format!(
        "the database has schema version {found}, newer than this build knows \
         ({LATEST_VERSION}); refusing to use it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_versions_start_at_one_and_increase_by_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "migration {:?}", m.name);
        }
        assert_eq!(LATEST_VERSION as usize, MIGRATIONS.len());
    }
}
