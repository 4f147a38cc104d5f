//! Executors: a queue whose jobs the server runs itself (contract §6).
//!
//! An [`Executor`] is part of a queue's configuration, stored with it and
//! given by `PUT /v1/queues/{queue}` as `{"executor": {"type": …}}`. This
//! module holds its shape and the checks that need no outside world
//! ([`Executor::check`]); whether a program exists or a URL resolves is
//! checked by the server when it builds the executor, before anything is
//! stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::{range, ValidationError, MAX_DELAY_MS};

/// Default bound of a command's stdout taken as the result (1 MiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
/// Default bound of a webhook's response body taken as the result (1 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Largest output or response bound a queue may set (64 MiB).
pub const MAX_OUTPUT_LIMIT: u64 = 64 * 1024 * 1024;
/// Default time limit of one webhook request (30 s).
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 30_000;
/// Most arguments, variables or headers an executor may name.
pub const MAX_ENTRIES: usize = 256;
/// Longest argument, variable, header, URL or secret, in bytes.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;

/// How the server runs a queue's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Executor {
    /// A program per job.
    Command(CommandExecutor),
    /// An HTTP POST per job.
    Webhook(WebhookExecutor),
}

/// Runs a program per job: the payload as JSON on stdin, the job in the
/// environment, stdout as the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandExecutor {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Working directory (the server's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Variables added to the child's allow-listed environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Most bytes of stdout taken as the result (default 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

/// POSTs each job to a URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookExecutor {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Headers added to every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Time limit of one request (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Signs every request (`Orderly-Signature`); never shown back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Most bytes of the response body taken as the result (default 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
}

impl std::fmt::Debug for WebhookExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookExecutor")
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl Executor {
    /// Reads an executor from the JSON a client sent, checking its shape
    /// ([`Executor::check`]); the error names the field.
    pub fn from_json(value: &serde_json::Value) -> Result<Executor, ValidationError> {
        let kind = value.get("type").and_then(|t| t.as_str());
        if !value.is_object() {
            return Err(ValidationError::value(
                "executor",
                "must be an object such as {\"type\": \"command\", \"argv\": [\"python3\", \"job.py\"]}",
            ));
        }
        match kind {
            Some("command" | "webhook") => {}
            Some(other) => {
                return Err(ValidationError::value(
                    "executor.type",
                    format!("is {other:?}: use \"command\" or \"webhook\""),
                ))
            }
            None => {
                return Err(ValidationError::value(
                    "executor.type",
                    "is missing: use \"command\" or \"webhook\"",
                ))
            }
        }
        let e: Executor = serde_json::from_value(value.clone())
            .map_err(|e| ValidationError::value("executor", format!("is not valid: {e}")))?;
        e.check()?;
        Ok(e)
    }

    /// Checks what can be checked without the outside world: a program is
    /// named, URLs are http(s), names and sizes are within bounds.
    pub fn check(&self) -> Result<(), ValidationError> {
        match self {
            Executor::Command(c) => c.check(),
            Executor::Webhook(w) => w.check(),
        }
    }

    /// The executor as the API shows it: everything but the secret, which is
    /// replaced by `"secret_set": true`.
    pub fn public_view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            if o.remove("secret").is_some() {
                o.insert("secret_set".into(), serde_json::Value::Bool(true));
            }
        }
        v
    }
}

fn text(field: &str, s: &str) -> Result<(), ValidationError> {
    if s.len() > MAX_TEXT_BYTES {
        return Err(ValidationError::value(
            field,
            format!("is {} bytes: at most {MAX_TEXT_BYTES}", s.len()),
        ));
    }
    if s.contains('\0') {
        return Err(ValidationError::value(field, "contains a NUL byte"));
    }
    Ok(())
}

fn entries(field: &str, n: usize) -> Result<(), ValidationError> {
    if n > MAX_ENTRIES {
        return Err(ValidationError::value(
            field,
            format!("has {n} entries: at most {MAX_ENTRIES}"),
        ));
    }
    Ok(())
}

impl CommandExecutor {
    fn check(&self) -> Result<(), ValidationError> {
        if self.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(ValidationError::value(
                "executor.argv",
                "is empty: name the program to run, e.g. [\"python3\", \"job.py\"]",
            ));
        }
        entries("executor.argv", self.argv.len())?;
        for (i, a) in self.argv.iter().enumerate() {
            text(&format!("executor.argv[{i}]"), a)?;
        }
        if let Some(d) = &self.cwd {
            if d.is_empty() {
                return Err(ValidationError::value("executor.cwd", "is empty"));
            }
            text("executor.cwd", d)?;
        }
        entries("executor.env", self.env.len())?;
        for (k, v) in &self.env {
            let field = format!("executor.env.{k}");
            if k.is_empty() || k.contains('=') {
                return Err(ValidationError::value(
                    &field,
                    "is not a variable name (empty or with `=`)",
                ));
            }
            if k.starts_with("ORDERLY_") {
                return Err(ValidationError::value(
                    &field,
                    "is reserved: Orderly sets the ORDERLY_ variables of a job itself",
                ));
            }
            text(&field, k)?;
            text(&field, v)?;
        }
        if let Some(m) = self.max_output_bytes {
            range("executor.max_output_bytes", m, 1, MAX_OUTPUT_LIMIT)?;
        }
        Ok(())
    }

    /// The stdout bound in effect.
    pub fn output_bound(&self) -> u64 {
        self.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES)
    }
}

impl WebhookExecutor {
    fn check(&self) -> Result<(), ValidationError> {
        text("executor.url", &self.url)?;
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        match host {
            None => {
                return Err(ValidationError::value(
                    "executor.url",
                    format!("is {:?}: use an http:// or https:// URL", self.url),
                ))
            }
            Some("") => {
                return Err(ValidationError::value(
                    "executor.url",
                    format!("is {:?}: it names no host", self.url),
                ))
            }
            Some(_) if self.url.chars().any(char::is_whitespace) => {
                return Err(ValidationError::value(
                    "executor.url",
                    "contains whitespace",
                ))
            }
            Some(_) => {}
        }
        entries("executor.headers", self.headers.len())?;
        for (k, v) in &self.headers {
            let field = format!("executor.headers.{k}");
            text(&field, k)?;
            text(&field, v)?;
        }
        if let Some(t) = self.timeout_ms {
            range("executor.timeout_ms", t, 1, MAX_DELAY_MS)?;
        }
        if let Some(s) = &self.secret {
            if s.is_empty() {
                return Err(ValidationError::value(
                    "executor.secret",
                    "is empty: leave it out to send unsigned requests",
                ));
            }
            text("executor.secret", s)?;
        }
        if let Some(m) = self.max_response_bytes {
            range("executor.max_response_bytes", m, 1, MAX_OUTPUT_LIMIT)?;
        }
        Ok(())
    }

    /// The request time limit in effect.
    pub fn timeout(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_MS)
    }

    /// The response bound in effect.
    pub fn response_bound(&self) -> u64 {
        self.max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: serde_json::Value) -> String {
        Executor::from_json(&v).unwrap_err().message
    }

    #[test]
    fn reads_both_kinds() {
        let c = Executor::from_json(
            &json!({"type": "command", "argv": ["python3", "job.py"], "env": {"A": "1"}}),
        )
        .unwrap();
        assert!(
            matches!(&c, Executor::Command(c) if c.argv.len() == 2 && c.output_bound() == DEFAULT_MAX_OUTPUT_BYTES)
        );
        let w = Executor::from_json(
            &json!({"type": "webhook", "url": "https://example.com/hook", "secret": "s3"}),
        )
        .unwrap();
        assert!(matches!(&w, Executor::Webhook(w) if w.timeout() == DEFAULT_WEBHOOK_TIMEOUT_MS));
    }

    #[test]
    fn refuses_bad_shapes_naming_the_field() {
        assert!(err(json!("python3 job.py")).contains("must be an object"));
        assert!(err(json!({"argv": ["x"]})).contains("executor.type"));
        assert!(err(json!({"type": "lambda"})).contains("\"lambda\""));
        assert!(err(json!({"type": "command", "argv": []})).contains("executor.argv"));
        assert!(err(json!({"type": "command", "argv": [""]})).contains("executor.argv"));
        assert!(err(json!({"type": "command", "argv": ["x"], "shell": true})).contains("shell"));
        assert!(
            err(json!({"type": "command", "argv": ["x"], "env": {"ORDERLY_TOKEN": "t"}}))
                .contains("reserved")
        );
        assert!(
            err(json!({"type": "command", "argv": ["x"], "max_output_bytes": 0}))
                .contains("max_output_bytes")
        );
        assert!(err(json!({"type": "webhook", "url": "ftp://h/x"})).contains("http://"));
        assert!(err(json!({"type": "webhook", "url": "http:///x"})).contains("no host"));
        assert!(
            err(json!({"type": "webhook", "url": "http://h", "secret": ""})).contains("secret")
        );
        assert!(
            err(json!({"type": "webhook", "url": "http://h", "timeout_ms": 0}))
                .contains("timeout_ms")
        );
    }

    #[test]
    fn the_secret_is_never_shown() {
        let w = Executor::from_json(
            &json!({"type": "webhook", "url": "http://h/x", "secret": "hunter2"}),
        )
        .unwrap();
        let shown = w.public_view().to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(w.public_view()["secret_set"], json!(true));
        assert!(!format!("{w:?}").contains("hunter2"));
    }
}
