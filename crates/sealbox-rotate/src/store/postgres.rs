//! The PostgreSQL store: one row per object, `key` a unique `text` column, `column` `bytea`.
//!
//! - URL: `postgres://user[:password]@host:port/db?table=T&column=C&key=K` (also
//!   `postgresql://`); other query parameters are the driver's (`sslmode`, `connect_timeout`,
//!   `application_name`, `host` for a Unix socket directory, …).
//! - Identifiers must match `[A-Za-z_][A-Za-z0-9_]*` (at most 63 bytes; the table may be
//!   `schema.table`) and are always quoted, so they are case-sensitive.
//! - Opening connects, checks that the table exists, that `key` is `text`/`varchar` with a
//!   unique index of its own and `column` is `bytea`, and prepares the statements. A closed
//!   connection is reopened on the next call.
//! - Listing orders by `key COLLATE "C"` and compares the cursor in the same collation, so
//!   the order is bytewise whatever the column's collation.
//! - The version is the hex SHA-256 of the bytes. `replace` is one
//!   `UPDATE … WHERE key = $1 AND sha256(column) = $3`: under PostgreSQL's row locking, of
//!   concurrent replaces of the same version exactly one updates the row. When none is
//!   updated, a second query tells [`StoreError::Conflict`] from [`StoreError::NotFound`].
//!   `create` is `INSERT … ON CONFLICT (key) DO NOTHING`.
//! - Each statement commits on its own: durable as the server's `synchronous_commit` makes it.
//! - No TLS yet: hosts must be loopback or Unix sockets, unless the URL says
//!   `sslmode=disable`; `sslmode=require` is refused.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sealbox_core::transport::is_loopback_host;
use sha2::{Digest, Sha256};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};

use super::{
    Object, ObjectMeta, Store, StoreError, Version, check_common_key, error_chain, redact_url,
    scrub,
};

const FORM: &str = "expected `postgres://user@host:port/db?table=T&column=C&key=K`";

/// The SQL texts, built once from the validated, quoted identifiers.
#[derive(Debug)]
struct Sql {
    /// `"schema"."table"` or `"table"`.
    table: String,
    /// The key column's name, unquoted (for the catalog queries).
    key_name: String,
    /// The envelope column's name, unquoted.
    column_name: String,
    list_first: String,
    list_after: String,
    read: String,
    replace: String,
    exists: String,
    create: String,
}

impl Sql {
    fn new(table: &str, column: &str, key: &str, key_name: &str, column_name: &str) -> Self {
        let live = format!("{key} IS NOT NULL AND {column} IS NOT NULL");
        Self {
            table: table.to_owned(),
            key_name: key_name.to_owned(),
            column_name: column_name.to_owned(),
            list_first: format!(
                "SELECT {key}, octet_length({column})::int8 FROM {table} WHERE {live} \
                 ORDER BY {key} COLLATE \"C\" LIMIT $1"
            ),
            list_after: format!(
                "SELECT {key}, octet_length({column})::int8 FROM {table} WHERE {live} \
                 AND {key} COLLATE \"C\" > $1 ORDER BY {key} COLLATE \"C\" LIMIT $2"
            ),
            read: format!("SELECT {column} FROM {table} WHERE {key} = $1 AND {column} IS NOT NULL"),
            replace: format!(
                "UPDATE {table} SET {column} = $2 WHERE {key} = $1 AND {column} IS NOT NULL \
                 AND sha256({column}) = $3"
            ),
            exists: format!("SELECT 1 FROM {table} WHERE {key} = $1 AND {column} IS NOT NULL"),
            create: format!(
                "INSERT INTO {table} ({key}, {column}) VALUES ($1, $2) ON CONFLICT ({key}) DO NOTHING"
            ),
        }
    }
}

/// One open connection and its prepared statements.
struct Conn {
    client: Client,
    list_first: Statement,
    list_after: Statement,
    read: Statement,
    replace: Statement,
    exists: Statement,
    create: Statement,
}

/// A table holding envelopes.
pub(crate) struct PostgresStore {
    config: tokio_postgres::Config,
    sql: Sql,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    describe: String,
    /// The password, scrubbed from every message.
    secrets: Vec<String>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a plain SQL identifier we accept.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` quoted for SQL (`schema.table` allowed when `qualified`).
fn quote(what: &str, name: &str, qualified: bool) -> Result<String, StoreError> {
    let parts: Vec<&str> = if qualified {
        name.split('.').collect()
    } else {
        vec![name]
    };
    if parts.len() > 2 || !parts.iter().all(|p| is_identifier(p)) {
        let form = if qualified {
            "an identifier `[A-Za-z_][A-Za-z0-9_]*` of at most 63 bytes, optionally \
             schema-qualified (`schema.table`)"
        } else {
            "an identifier `[A-Za-z_][A-Za-z0-9_]*` of at most 63 bytes"
        };
        return Err(StoreError::InvalidUrl(format!(
            "PostgreSQL store: `{what}` is `{}`, expected {form}",
            name.escape_debug()
        )));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

/// Whether a host the driver will connect to is this machine.
fn is_local(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => match name.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => is_loopback_host(Some(url::Host::Ipv4(a))),
            Ok(IpAddr::V6(a)) => is_loopback_host(Some(url::Host::Ipv6(a))),
            Err(_) => is_loopback_host(Some(url::Host::Domain(name))),
        },
        Host::Unix(_) => true,
    }
}

/// `url` for reports: no password (in the user info or as a query parameter).
fn describe_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("password"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.is_empty() {
            shown.set_query(None);
        } else {
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    shown.to_string()
}

/// Opens `postgres://…`: validates the URL, connects, checks the table.
pub(crate) async fn open(
    url: &str,
    options: &[(&str, &str)],
) -> Result<Arc<dyn Store>, StoreError> {
    let shown = redact_url(url);
    let invalid =
        |what: String| StoreError::InvalidUrl(format!("PostgreSQL store `{shown}`: {what}"));
    let mut parsed = url::Url::parse(url).map_err(|e| invalid(format!("{e}; {FORM}")))?;
    let (mut table, mut column, mut key) = (None, None, None);
    let mut rest = Vec::new();
    for (name, value) in parsed.query_pairs() {
        match name.as_ref() {
            "table" => table = Some(value.into_owned()),
            "column" => column = Some(value.into_owned()),
            "key" => key = Some(value.into_owned()),
            _ => rest.push((name.into_owned(), value.into_owned())),
        }
    }
    let (Some(table), Some(column), Some(key)) = (table, column, key) else {
        return Err(invalid(format!(
            "the `table`, `column` and `key` parameters are required; {FORM}"
        )));
    };
    let table_sql = quote("table", &table, true)?;
    let column_sql = quote("column", &column, false)?;
    let key_sql = quote("key", &key, false)?;
    let describe = describe_url(&parsed);

    let mut password = parsed.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    for (name, value) in &rest {
        if name.eq_ignore_ascii_case("password") {
            password = Some(value.clone());
        }
    }
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(&rest);
    }
    // Both forms: the URL's (percent-encoded) and the decoded one.
    let mut secrets: Vec<String> = password.iter().cloned().collect();
    secrets.extend(parsed.password().map(str::to_owned));
    let mut config = tokio_postgres::Config::from_str(parsed.as_str())
        .map_err(|e| invalid(scrub(error_chain(&e), &secrets)))?;

    for (name, value) in options {
        match name.to_ascii_lowercase().as_str() {
            "password" => {
                config.password(*value);
                secrets.push((*value).to_owned());
            }
            _ => {
                return Err(invalid(format!(
                    "unknown option `{}`: the PostgreSQL store takes only `password`",
                    name.escape_debug()
                )));
            }
        }
    }
    if config.get_password().is_none()
        && let Ok(from_env) = std::env::var("PGPASSWORD")
    {
        config.password(from_env.as_str());
        secrets.push(from_env);
    }

    let hosts = config.get_hosts();
    if hosts.is_empty() && config.get_hostaddrs().is_empty() {
        return Err(invalid(format!("no host; {FORM}")));
    }
    let mode = config.get_ssl_mode();
    if !matches!(mode, SslMode::Disable | SslMode::Prefer) {
        return Err(invalid(
            "TLS is not supported yet: connect to a loopback host or a Unix socket, or accept \
             plain text with `sslmode=disable`"
                .to_owned(),
        ));
    }
    let remote = hosts
        .iter()
        .find(|h| !is_local(h))
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .or_else(|| {
            config
                .get_hostaddrs()
                .iter()
                .find(|a| !a.is_loopback())
                .map(IpAddr::to_string)
        });
    if let Some(remote) = remote
        && mode != SslMode::Disable
    {
        return Err(invalid(format!(
            "refusing a plain-text connection to `{}`, which is not loopback: TLS is not \
             supported yet; add `sslmode=disable` to the URL to accept plain text",
            remote.escape_debug()
        )));
    }
    config.ssl_mode(SslMode::Disable);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("sealbox-rotate");
    }

    let store = PostgresStore {
        config,
        sql: Sql::new(&table_sql, &column_sql, &key_sql, &key, &column),
        conn: tokio::sync::Mutex::new(None),
        describe,
        secrets,
    };
    store.conn().await?;
    Ok(Arc::new(store))
}

impl PostgresStore {
    fn error(&self, key: Option<&str>, e: &tokio_postgres::Error) -> StoreError {
        let message = match e.as_db_error() {
            Some(db) => {
                let mut m = format!(
                    "{}: {} (SQLSTATE {})",
                    db.severity(),
                    db.message(),
                    db.code().code()
                );
                if let Some(detail) = db.detail() {
                    m.push_str(&format!("; {detail}"));
                }
                if let Some(hint) = db.hint() {
                    m.push_str(&format!("; hint: {hint}"));
                }
                m
            }
            None => error_chain(e),
        };
        StoreError::backend(key, scrub(message, &self.secrets))
    }

    /// Maps a statement's error; a broken connection (closed, I/O, a FATAL error such as
    /// an administrator's termination) is dropped so that the next call reconnects.
    async fn statement_error(
        &self,
        conn: &Arc<Conn>,
        key: Option<&str>,
        e: &tokio_postgres::Error,
    ) -> StoreError {
        let statement_only = e.as_db_error().is_some_and(|db| db.severity() == "ERROR");
        if !statement_only {
            let mut slot = self.conn.lock().await;
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
                *slot = None;
            }
        }
        self.error(key, e)
    }

    fn fail(&self, message: String) -> StoreError {
        StoreError::backend(None, format!("{}: {message}", self.describe))
    }

    /// The open connection, reconnecting if it was closed.
    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.client.is_closed()
        {
            return Ok(Arc::clone(conn));
        }
        let conn = Arc::new(self.connect().await?);
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| self.fail(self.error(None, &e).to_string()))?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the next call then
            // sees a closed client and reconnects.
            let _ = connection.await;
        });
        let sql = &self.sql;
        let oid: u32 = client
            .query_one("SELECT $1::text::regclass::oid", &[&sql.table])
            .await
            .map_err(|e| self.fail(self.error(None, &e).to_string()))?
            .get(0);
        for (name, what, accepted) in [
            (&sql.key_name, "key", &[Type::TEXT, Type::VARCHAR][..]),
            (&sql.column_name, "envelope", &[Type::BYTEA][..]),
        ] {
            let row = client
                .query_opt(
                    "SELECT atttypid FROM pg_attribute \
                     WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                    &[&oid, name],
                )
                .await
                .map_err(|e| self.fail(self.error(None, &e).to_string()))?;
            let Some(row) = row else {
                return Err(self.fail(format!(
                    "the table has no column `{name}` (the {what} column)"
                )));
            };
            let type_oid: u32 = row.get(0);
            if !accepted.iter().any(|t| t.oid() == type_oid) {
                let actual = Type::from_oid(type_oid)
                    .map_or_else(|| format!("type {type_oid}"), |t| t.name().to_owned());
                let expected: Vec<&str> = accepted.iter().map(Type::name).collect();
                return Err(self.fail(format!(
                    "the {what} column `{name}` is `{actual}`, expected `{}`",
                    expected.join("` or `")
                )));
            }
        }
        let unique: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                   ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1 \
                   AND i.indpred IS NULL AND a.attname = $2)",
                &[&oid, &sql.key_name],
            )
            .await
            .map_err(|e| self.fail(self.error(None, &e).to_string()))?
            .get(0);
        if !unique {
            return Err(self.fail(format!(
                "the key column `{}` needs a unique index of its own (PRIMARY KEY or UNIQUE): \
                 create and replace rely on one row per key",
                sql.key_name
            )));
        }
        let prepare = |text: &'static str, sql_text: String| {
            let client = &client;
            async move {
                client
                    .prepare(&sql_text)
                    .await
                    .map_err(|e| self.fail(format!("{text}: {}", self.error(None, &e))))
            }
        };
        let list_first = prepare("list", sql.list_first.clone()).await?;
        let read = prepare("read", sql.read.clone()).await?;
        let list_after = prepare("list", sql.list_after.clone()).await?;
        let replace = prepare("replace", sql.replace.clone()).await?;
        let exists = prepare("exists", sql.exists.clone()).await?;
        let create = prepare("create", sql.create.clone()).await?;
        Ok(Conn {
            client,
            list_first,
            list_after,
            read,
            replace,
            exists,
            create,
        })
    }
}

fn version_of(bytes: &[u8]) -> Version {
    Version(hex::encode(Sha256::digest(bytes)))
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<ObjectMeta>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.conn().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            None => conn.client.query(&conn.list_first, &[&limit]).await,
            Some(after) => conn.client.query(&conn.list_after, &[&after, &limit]).await,
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => return Err(self.statement_error(&conn, None, &e).await),
        };
        rows.iter()
            .map(|row| {
                let key: String = row.try_get(0).map_err(|e| self.error(None, &e))?;
                let size: i64 = row.try_get(1).map_err(|e| self.error(None, &e))?;
                Ok(ObjectMeta {
                    key,
                    size: u64::try_from(size).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn read(&self, key: &str) -> Result<Object, StoreError> {
        check_common_key(key)?;
        let conn = self.conn().await?;
        let row = match conn.client.query_opt(&conn.read, &[&key]).await {
            Ok(row) => row.ok_or_else(|| StoreError::not_found(key))?,
            Err(e) => return Err(self.statement_error(&conn, Some(key), &e).await),
        };
        let bytes: Vec<u8> = row.try_get(0).map_err(|e| self.error(Some(key), &e))?;
        let version = version_of(&bytes);
        Ok(Object { bytes, version })
    }

    async fn replace(
        &self,
        key: &str,
        expected: &Version,
        bytes: Vec<u8>,
    ) -> Result<Version, StoreError> {
        check_common_key(key)?;
        let conn = self.conn().await?;
        // A token that is not a SHA-256 matches no row.
        let expected_hash = hex::decode(&expected.0)
            .ok()
            .filter(|h| h.len() == 32)
            .unwrap_or_default();
        let version = version_of(&bytes);
        let updated = match conn
            .client
            .execute(&conn.replace, &[&key, &bytes, &expected_hash])
            .await
        {
            Ok(n) => n,
            Err(e) => return Err(self.statement_error(&conn, Some(key), &e).await),
        };
        if updated == 1 {
            return Ok(version);
        }
        let exists = match conn.client.query_opt(&conn.exists, &[&key]).await {
            Ok(row) => row,
            Err(e) => return Err(self.statement_error(&conn, Some(key), &e).await),
        };
        Err(match exists {
            Some(_) => StoreError::conflict(key),
            None => StoreError::not_found(key),
        })
    }

    async fn create(&self, key: &str, bytes: Vec<u8>) -> Result<Version, StoreError> {
        check_common_key(key)?;
        let conn = self.conn().await?;
        let version = version_of(&bytes);
        let inserted = match conn.client.execute(&conn.create, &[&key, &bytes]).await {
            Ok(n) => n,
            Err(e) => return Err(self.statement_error(&conn, Some(key), &e).await),
        };
        if inserted == 1 {
            Ok(version)
        } else {
            Err(StoreError::conflict(key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_and_quoted() {
        assert_eq!(
            quote("t", "envelopes", true).ok().as_deref(),
            Some("\"envelopes\"")
        );
        assert_eq!(
            quote("t", "s.Envelopes_2", true).ok().as_deref(),
            Some("\"s\".\"Envelopes_2\"")
        );
        for bad in [
            "",
            "1a",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "a.b.c",
            ".a",
            "a.",
            &"x".repeat(64),
        ] {
            assert!(quote("t", bad, true).is_err(), "{bad}");
        }
        assert!(quote("c", "s.c", false).is_err());
    }

    #[test]
    fn local_hosts() {
        for local in ["127.0.0.1", "::1", "localhost", "127.1.2.3"] {
            assert!(is_local(&Host::Tcp(local.into())), "{local}");
        }
        for remote in ["db.example.com", "10.0.0.1", "::", "0.0.0.0"] {
            assert!(!is_local(&Host::Tcp(remote.into())), "{remote}");
        }
        assert!(is_local(&Host::Unix("/run/postgresql".into())));
    }
}
