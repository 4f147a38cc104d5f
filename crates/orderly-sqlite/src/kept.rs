//! The writer's prepared statements, each prepared once and kept for the
//! life of its connection, found by the address of its SQL text.
//!
//! rusqlite's `prepare_cached` finds a statement by hashing its whole SQL
//! text and, when the statement is dropped, copies that text into a new
//! `Arc<str>` to put it back: about 1,750 instructions per use, an eighth
//! of the writer's instructions per claim + complete, which runs about
//! twenty statements (docs/performance.md, stop 23). The writer's SQL is
//! `&'static str`, so the text's address and length are a key that needs
//! no hashing of the text, and a kept statement is lent, not moved.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use rusqlite::{Connection, PrepFlags, Statement};

/// Lends a prepared statement for one use: a connection from its own cache
/// (the readers), the writer from its kept statements.
pub(crate) trait Prepare {
    /// Runs `f` on the statement of `sql`.
    fn with<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Prepare for Connection {
    fn with<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut stmt = self.prepare_cached(sql)?;
        f(&mut stmt)
    }
}

/// A kept statement, lent to one use at a time.
type Slot<'c> = Rc<RefCell<Statement<'c>>>;

/// Statements prepared on one connection, kept by the address of their text.
pub(crate) struct KeptStatements<'c> {
    conn: &'c Connection,
    kept: RefCell<HashMap<(usize, usize), Slot<'c>>>,
}

impl<'c> KeptStatements<'c> {
    /// Nothing prepared yet on `conn`.
    pub fn new(conn: &'c Connection) -> Self {
        KeptStatements {
            conn,
            kept: RefCell::new(HashMap::new()),
        }
    }
}

impl Prepare for KeptStatements<'_> {
    /// Runs `f` on the statement of `sql`, prepared at its first use. A
    /// statement already lent (a use nested in another use of the same
    /// text) is prepared again from the connection's cache for the inner use.
    fn with<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let key = (sql.as_ptr() as usize, sql.len());
        let found = self.kept.borrow().get(&key).cloned();
        let slot = match found {
            Some(slot) => slot,
            None => {
                // Persistent, as rusqlite's cache prepares: a statement kept
                // for the connection's life must not hold SQLite's lookaside
                // slots, or every other allocation falls back to `malloc`.
                let stmt = self
                    .conn
                    .prepare_with_flags(sql, PrepFlags::SQLITE_PREPARE_PERSISTENT)?;
                let slot = Rc::new(RefCell::new(stmt));
                self.kept.borrow_mut().insert(key, slot.clone());
                slot
            }
        };
        let Ok(mut stmt) = slot.try_borrow_mut() else {
            let mut inner = self.conn.prepare_cached(sql)?;
            return f(&mut inner);
        };
        f(&mut stmt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNT: &str = "SELECT count(*) FROM t";

    /// A kept statement sees the rows written after it was prepared, and a
    /// nested use of the same text gets its own statement instead of a panic.
    #[test]
    fn kept_statements_are_reused_and_may_nest() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (x INTEGER)")
            .expect("table");
        let kept = KeptStatements::new(&conn);
        let count = || kept.with(COUNT, |s| s.query_row([], |r| r.get::<_, i64>(0)));
        assert_eq!(count().expect("count"), 0);
        conn.execute("INSERT INTO t VALUES (1)", [])
            .expect("insert");
        assert_eq!(count().expect("count"), 1);
        assert_eq!(kept.kept.borrow().len(), 1, "prepared once");
        let nested = kept
            .with(COUNT, |outer| {
                let inner = count()?;
                Ok((outer.query_row([], |r| r.get::<_, i64>(0))?, inner))
            })
            .expect("nested");
        assert_eq!(nested, (1, 1));
    }
}
