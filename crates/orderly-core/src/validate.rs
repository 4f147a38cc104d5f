//! The names and numbers users may give, and the error that says which one was wrong.
//!
//! Every check returns a [`ValidationError`] with a stable `code` (the HTTP
//! layer puts it in the JSON error) and a message that names the field and the
//! bound, so a user can fix the request without reading the source.

use crate::queue::{Backoff, QueuePatch};

/// Longest queue name, in bytes.
pub const MAX_QUEUE_NAME_BYTES: usize = 100;
/// Longest job id, in bytes.
pub const MAX_JOB_ID_BYTES: usize = 200;
/// Longest ordering key, in bytes.
pub const MAX_KEY_BYTES: usize = 200;
/// Highest queue concurrency.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Highest `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1_000;
/// Shortest lease.
pub const MIN_LEASE_MS: u64 = 100;
/// Longest lease (one day).
pub const MAX_LEASE_MS: u64 = 86_400_000;
/// Longest delay or timeout (one year).
pub const MAX_DELAY_MS: u64 = 365 * 86_400_000;
/// Longest backoff delay (one week).
pub const MAX_BACKOFF_MS: u64 = 7 * 86_400_000;
/// Highest backoff growth factor.
pub const MAX_BACKOFF_FACTOR: f64 = 100.0;
/// Most leases one claim may take.
pub const MAX_CLAIM: u32 = 1_000;
/// Longest claim long-poll.
pub const MAX_WAIT_MS: u64 = 300_000;
/// Most jobs in one batch.
pub const MAX_BATCH_JOBS: usize = 10_000;
/// Longest worker name.
pub const MAX_WORKER_BYTES: usize = 200;
/// Largest page of a listing.
pub const MAX_LIST_LIMIT: u32 = 1_000;
/// Page size of a listing that names none.
pub const DEFAULT_LIST_LIMIT: u32 = 100;

/// A value a user gave that breaks a rule of the domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// Stable snake_case code, e.g. `invalid_queue_name`.
    pub code: &'static str,
    /// What was wrong, naming the field and the bound.
    pub message: String,
}

impl ValidationError {
    /// A new error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ValidationError {
            code,
            message: message.into(),
        }
    }

    /// An `invalid_value` error for `field`.
    pub fn value(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new("invalid_value", format!("`{field}` {message}"))
    }
}

fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// The ids of one batch must differ: a batch is accepted whole, in order, and
/// one id cannot name two jobs of it. `ids` are in batch order.
pub fn distinct_batch_ids<'a>(
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), ValidationError> {
    let mut seen = std::collections::HashMap::new();
    for (i, id) in ids.into_iter().enumerate() {
        if let Some(first) = seen.insert(id, i) {
            return Err(ValidationError::value(
                &format!("jobs[{i}].id"),
                format!("repeats jobs[{first}].id {id:?}: the ids of one batch must differ"),
            ));
        }
    }
    Ok(())
}

/// A queue name: 1–100 bytes of `[A-Za-z0-9._-]`.
pub fn queue_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "invalid_queue_name",
            format!(
                "queue name {} is invalid: use 1 to {MAX_QUEUE_NAME_BYTES} bytes of A-Z, a-z, 0-9, '.', '_' or '-'",
                shown(name)
            ),
        ))
    }
}

/// A job id: 1–200 bytes of `[A-Za-z0-9._:-]` (UUIDs qualify).
pub fn job_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_JOB_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "invalid_job_id",
            format!(
                "job id {} is invalid: use 1 to {MAX_JOB_ID_BYTES} bytes of A-Z, a-z, 0-9, '.', '_', ':' or '-'",
                shown(id)
            ),
        ))
    }
}

/// An ordering key: any string of 1–200 bytes.
pub fn key(key: &str) -> Result<(), ValidationError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        Err(ValidationError::new(
            "invalid_key",
            format!(
                "key is {} bytes: a key must be 1 to {MAX_KEY_BYTES} bytes",
                key.len()
            ),
        ))
    } else {
        Ok(())
    }
}

/// A worker name: 1–200 bytes.
pub fn worker(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_WORKER_BYTES {
        Err(ValidationError::value(
            "worker",
            format!("must be 1 to {MAX_WORKER_BYTES} bytes"),
        ))
    } else {
        Ok(())
    }
}

/// A listing's page size (`limit`): [`DEFAULT_LIST_LIMIT`] when not given,
/// else 1 to [`MAX_LIST_LIMIT`]. Every cursor-paged listing takes it.
pub fn list_limit(limit: Option<u32>) -> Result<u32, ValidationError> {
    range(
        "limit",
        limit.unwrap_or(DEFAULT_LIST_LIMIT),
        1,
        MAX_LIST_LIMIT,
    )
}

/// Checks `value` lies in `min..=max` for `field`.
pub fn range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ValidationError> {
    if value < min || value > max {
        Err(ValidationError::value(
            field,
            format!("is {value}: it must be between {min} and {max}"),
        ))
    } else {
        Ok(value)
    }
}

/// Checks a backoff policy.
pub fn backoff(b: &Backoff) -> Result<(), ValidationError> {
    range("backoff.initial_ms", b.initial_ms, 0, MAX_BACKOFF_MS)?;
    range("backoff.max_ms", b.max_ms, 0, MAX_BACKOFF_MS)?;
    if b.max_ms < b.initial_ms {
        return Err(ValidationError::value(
            "backoff.max_ms",
            format!(
                "is {}: it must not be below backoff.initial_ms ({})",
                b.max_ms, b.initial_ms
            ),
        ));
    }
    if !b.factor.is_finite() {
        return Err(ValidationError::value(
            "backoff.factor",
            "must be a finite number",
        ));
    }
    range("backoff.factor", b.factor, 1.0, MAX_BACKOFF_FACTOR)?;
    Ok(())
}

/// Checks every field a queue patch sets.
pub fn queue_patch(p: &QueuePatch) -> Result<(), ValidationError> {
    if let Some(c) = p.concurrency {
        range("concurrency", c, 1, MAX_CONCURRENCY)?;
    }
    if let Some(a) = p.max_attempts {
        range("max_attempts", a, 1, MAX_ATTEMPTS_LIMIT)?;
    }
    if let Some(b) = &p.backoff {
        backoff(b)?;
    }
    if let Some(l) = p.lease_ms {
        range("lease_ms", l, MIN_LEASE_MS, MAX_LEASE_MS)?;
    }
    if let Some(Some(e)) = &p.executor {
        e.check()?;
    }
    Ok(())
}

/// A report's outcome: a `retry_after_ms` must be a delay Orderly accepts
/// elsewhere (at most a year). `field` names it in the error.
pub fn outcome(o: &crate::store::Outcome, field: &str) -> Result<(), ValidationError> {
    if let crate::store::Outcome::Failed {
        retry_after_ms: Some(ms),
        ..
    } = o
    {
        range(field, *ms, 0, MAX_DELAY_MS)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for ok in ["default", "a", "emails.v2", "A-b_c", &"q".repeat(100)] {
            assert!(queue_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "slash/", "ünïcode", &"q".repeat(101)] {
            assert_eq!(queue_name(bad).unwrap_err().code, "invalid_queue_name");
        }
    }

    #[test]
    fn job_ids() {
        for ok in ["c880cc1b-dc27-4175-b616-29a69322d156", "order:17", "a.b_c"] {
            assert!(job_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "x/y", &"i".repeat(201)] {
            assert_eq!(job_id(bad).unwrap_err().code, "invalid_job_id");
        }
    }

    #[test]
    fn ranges_name_the_bound() {
        let e = range("concurrency", 0, 1, MAX_CONCURRENCY).unwrap_err();
        assert!(e.message.contains("concurrency"), "{}", e.message);
        assert!(e.message.contains("10000"), "{}", e.message);
        let e = backoff(&Backoff {
            initial_ms: 10,
            max_ms: 5,
            factor: 2.0,
        })
        .unwrap_err();
        assert!(e.message.contains("backoff.max_ms"));
        assert!(backoff(&Backoff {
            initial_ms: 1,
            max_ms: 5,
            factor: f64::NAN
        })
        .is_err());
    }
}
