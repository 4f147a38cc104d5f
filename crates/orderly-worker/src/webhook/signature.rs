//! The `Orderly-Signature` header (documented for receivers in
//! `docs/webhooks.md`).
//!
//! ```text
//! Orderly-Signature: t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret, "<t>.<body>")>
//! ```
//!
//! The MAC's key is the secret's UTF-8 bytes; its message is the timestamp's
//! decimal digits exactly as sent in `t`, one `.` and the request body's raw
//! bytes. The timestamp is taken when each request is built, so every attempt
//! carries a fresh one and a receiver can refuse a replay outside its window.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header's name.
pub const SIGNATURE_HEADER: &str = "Orderly-Signature";

/// The header's value for `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex MAC>`.
pub fn header_value(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}
