//! Optional HTTP basic auth, on the model of Prometheus' exporter-toolkit web config: users with
//! bcrypt hashes in the config, so the file never holds a password.
//!
//! bcrypt is slow on purpose (a quarter of a second at cost 12), which shapes the rest:
//! - a successful check is cached, keyed by a SHA-256 of user, password and hash, so Prometheus
//!   scraping every 15 s pays bcrypt once, not per scrape; only successes are cached, so the cache
//!   cannot be filled by guessing, and it is bounded all the same;
//! - bcrypt runs on the blocking pool, never on the async workers that answer scrapes, and at most
//!   a few at once, so a flood of wrong passwords queues up instead of taking every core;
//! - an unknown user is checked against a real configured hash too (and refused whatever the
//!   result), so response times do not tell which user names exist.
//!
//! Credentials are never logged: not the header, not the user name of a failed attempt.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::settings::BasicAuthConfig;

/// The realm in `WWW-Authenticate`.
pub const REALM: &str = "healthlake-exporter";
/// Distinct successful (user, password) pairs remembered; a handful of users need a handful.
const CACHE_CAPACITY: usize = 256;

/// Checks that `hash` is a bcrypt hash this exporter can verify: `$2a$`, `$2b$` or `$2y$`, a cost
/// from 04 to 31, and 53 characters of salt and hash. The message never repeats the value.
pub fn check_bcrypt_hash(hash: &str) -> Result<(), String> {
    let prefix_ok = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix));
    if !prefix_ok {
        return Err(
            "is not a bcrypt hash: it must start with $2a$, $2b$ or $2y$ (a plain password does not belong here)"
                .to_owned(),
        );
    }
    let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
        format!("is not a well-formed bcrypt hash ({e}); a bcrypt hash has 60 characters")
    })?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!(
            "has bcrypt cost {cost}; bcrypt costs run from 04 to 31 (10 to 12 is usual)"
        ));
    }
    Ok(())
}

/// The configured users and the cache of recent successful checks.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A configured hash that unknown users are checked against, for equal timing.
    decoy: String,
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt_slots: Arc<Semaphore>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// `None` when the config has no users (validation refuses that, so this is a guard).
    pub fn new(config: &BasicAuthConfig) -> Option<BasicAuth> {
        let decoy = config.users.values().next()?.clone();
        let parallel = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .clamp(1, 4);
        Some(BasicAuth {
            users: config.users.clone(),
            decoy,
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: Arc::new(Semaphore::new(parallel)),
        })
    }

    /// Whether the `Authorization` header carries a configured user and its password.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let key = cache_key(&user, &password, &hash);
        if known && self.cache().contains(&key) {
            return true;
        }
        let Ok(_slot) = Arc::clone(&self.bcrypt_slots).acquire_owned().await else {
            return false;
        };
        let matched =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = known && matched;
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // The set is valid whatever a panicking holder did; at worst it forgets an entry.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `Basic base64(user:password)` → (user, password). The scheme is case-insensitive (RFC 9110);
/// the password may hold any bytes, the user must be UTF-8 to match a configured name.
fn parse_basic(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = value.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let encoded = rest.trim_ascii();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

fn cache_key(user: &str, password: &[u8], hash: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [user.as_bytes(), password, hash.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_credentials() {
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        // "alice:pa:ss" — a password may contain colons.
        assert_eq!(
            parse_basic(&header("Basic YWxpY2U6cGE6c3M=")),
            Some(("alice".to_owned(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            parse_basic(&header("basic   YWxpY2U6cGE6c3M=")).map(|c| c.0),
            Some("alice".to_owned())
        );
        assert_eq!(parse_basic(&header("Bearer YWxpY2U6cGE6c3M=")), None);
        assert_eq!(parse_basic(&header("Basic !!!")), None);
        assert_eq!(parse_basic(&header("Basic YWxpY2U=")), None, "no colon");
        assert_eq!(parse_basic(&header("Basic")), None);
    }

    #[test]
    fn recognises_bcrypt_hashes() {
        let good = bcrypt::hash("x", 4).unwrap().replacen("$2b$", "$2y$", 1);
        let good = good.as_str();
        assert_eq!(check_bcrypt_hash(good), Ok(()));
        assert!(check_bcrypt_hash(&good.replace("$2y$", "$2b$")).is_ok());
        let plain = check_bcrypt_hash("hunter2").unwrap_err();
        assert!(
            plain.contains("must start with $2a$, $2b$ or $2y$"),
            "{plain}"
        );
        assert!(!plain.contains("hunter2"));
        assert!(check_bcrypt_hash(&good.replace("$2y$", "$2x$")).is_err());
        assert!(check_bcrypt_hash(&good[..50])
            .unwrap_err()
            .contains("60 characters"));
        assert!(check_bcrypt_hash(&good.replace("$04$", "$03$"))
            .unwrap_err()
            .contains("cost 3"));
    }

    #[tokio::test]
    async fn verifies_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(&BasicAuthConfig {
            users: BTreeMap::from([("alice".to_owned(), hash)]),
        })
        .unwrap();
        let basic = |s: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(s);
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
        };
        assert!(auth.check(Some(&basic("alice:s3cret"))).await);
        assert_eq!(auth.cache().len(), 1);
        assert!(auth.check(Some(&basic("alice:s3cret"))).await, "cached");
        assert!(!auth.check(Some(&basic("alice:wrong"))).await);
        assert!(
            !auth.check(Some(&basic("bob:s3cret"))).await,
            "unknown user, same password"
        );
        assert!(!auth.check(None).await);
        assert_eq!(auth.cache().len(), 1, "failures are not cached");
    }
}
