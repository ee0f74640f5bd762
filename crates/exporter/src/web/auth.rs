//! Optional HTTP basic auth, on the model of Prometheus' exporter-toolkit web config: users with
//! bcrypt hashes in the config, so the file never holds a password.
//!
//! bcrypt is slow on purpose (a quarter of a second at cost 12), which makes it a CPU lever for
//! anyone who can reach the endpoint. So:
//! - **one verification at a time**, on the blocking pool, never on the async workers that answer
//!   scrapes: a flood of wrong passwords costs at most one core;
//! - **a short queue, then 429**: at most [`MAX_WAITING`] requests wait for the bcrypt slot; the
//!   next ones are answered `429 Too Many Requests` at once instead of piling up;
//! - **outcomes are cached**, keyed by a SHA-256 of user, password and configured hash (never the
//!   password itself): a success for [`SUCCESS_TTL`], a failure for [`FAILURE_TTL`], each map
//!   bounded. A scrape whose credentials were verified before never waits behind bcrypt, and a
//!   client repeating one wrong password pays for it once, not per request;
//! - an unknown user is checked against a real configured hash too (and refused whatever the
//!   result), so response times do not tell which user names exist.
//!
//! Credentials are never logged: not the header, not the user name of a failed attempt.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::settings::BasicAuthConfig;

/// Distinct successful (user, password) pairs remembered; a handful of users need a handful.
const SUCCESS_CAPACITY: usize = 256;
/// Distinct failed (user, password) pairs remembered.
const FAILURE_CAPACITY: usize = 4096;
/// How long a verified password is trusted without bcrypt (a reload starts a fresh cache, so a
/// removed user loses access at once).
pub const SUCCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a wrong password is refused without bcrypt: short, so that a user who just fixed a
/// password is not locked out for long.
pub const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Requests that may wait for the bcrypt slot; more are answered 429 at once.
pub const MAX_WAITING: usize = 8;

/// Checks that `hash` is a bcrypt hash this exporter can verify: `$2a$`, `$2b$` or `$2y$`, a cost
/// from 04 to 31, and 53 characters of salt and hash. The message never repeats the value.
pub(crate) fn check_bcrypt_hash(hash: &str) -> Result<(), String> {
    let prefix_ok = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix));
    if !prefix_ok {
        return Err(
            "is not a bcrypt hash: it must start with $2a$, $2b$ or $2y$ (a plain password does not belong here)"
                .to_owned(),
        );
    }
    // The parser's own message may quote the value: say only what is wrong with its shape.
    let parts: bcrypt::HashParts = hash.parse().map_err(|_| {
        "is not a well-formed bcrypt hash; a bcrypt hash has 60 characters".to_owned()
    })?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!(
            "has bcrypt cost {cost}; bcrypt costs run from 04 to 31 (10 to 12 is usual)"
        ));
    }
    Ok(())
}

/// The outcome of a credentials check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A configured user and its password.
    Allowed,
    /// Missing, malformed or wrong credentials: 401.
    Denied,
    /// Not checked: too many requests already wait for bcrypt. 429, try again shortly.
    Busy,
}

/// The configured users and the caches of recent checks.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A configured hash that unknown users are checked against, for equal timing.
    decoy: String,
    successes: Mutex<HashMap<[u8; 32], Instant>>,
    failures: Mutex<HashMap<[u8; 32], Instant>>,
    /// One permit: one bcrypt verification at a time.
    bcrypt_slot: Arc<Semaphore>,
    /// Requests waiting for (or holding) the bcrypt slot.
    waiting: AtomicUsize,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Decrements the waiting count however the check ends (the request may be dropped mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps are valid whatever a panicking holder did; at worst they forget an entry.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BasicAuth {
    /// `None` when the config has no users (validation refuses that, so this is a guard).
    pub fn new(config: &BasicAuthConfig) -> Option<BasicAuth> {
        let decoy = config.users.values().next()?.clone();
        Some(BasicAuth {
            users: config.users.clone(),
            decoy,
            successes: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            bcrypt_slot: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Whether the `Authorization` header carries a configured user and its password.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Verdict::Denied;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let key = cache_key(&user, &password, &hash);
        let now = Instant::now();
        if known && fresh(&lock(&self.successes), &key, now, SUCCESS_TTL) {
            return Verdict::Allowed;
        }
        if fresh(&lock(&self.failures), &key, now, FAILURE_TTL) {
            return Verdict::Denied;
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Verdict::Busy;
        }
        let _waiting = Waiting(&self.waiting);
        let Ok(permit) = Arc::clone(&self.bcrypt_slot).acquire_owned().await else {
            return Verdict::Denied;
        };
        // Another request may have verified the same credentials while this one waited.
        let now = Instant::now();
        if known && fresh(&lock(&self.successes), &key, now, SUCCESS_TTL) {
            return Verdict::Allowed;
        }
        if fresh(&lock(&self.failures), &key, now, FAILURE_TTL) {
            return Verdict::Denied;
        }
        // The permit goes with the computation: a request dropped mid-check (client gone) does
        // not free the slot while bcrypt still runs.
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(&password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = known && matched;
        let now = Instant::now();
        if ok {
            remember(
                &mut lock(&self.successes),
                key,
                now,
                SUCCESS_TTL,
                SUCCESS_CAPACITY,
            );
            Verdict::Allowed
        } else {
            remember(
                &mut lock(&self.failures),
                key,
                now,
                FAILURE_TTL,
                FAILURE_CAPACITY,
            );
            Verdict::Denied
        }
    }

    #[cfg(test)]
    fn cached(&self) -> (usize, usize) {
        (lock(&self.successes).len(), lock(&self.failures).len())
    }
}

fn fresh(map: &HashMap<[u8; 32], Instant>, key: &[u8; 32], now: Instant, ttl: Duration) -> bool {
    map.get(key).is_some_and(|at| now.duration_since(*at) < ttl)
}

/// Inserts `key`, first dropping expired entries when the map is full, and everything when it is
/// still full: the bound holds whatever a client sends.
fn remember(
    map: &mut HashMap<[u8; 32], Instant>,
    key: [u8; 32],
    now: Instant,
    ttl: Duration,
    capacity: usize,
) {
    if map.len() >= capacity {
        map.retain(|_, at| now.duration_since(*at) < ttl);
        if map.len() >= capacity {
            map.clear();
        }
    }
    map.insert(key, now);
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
    async fn verifies_and_caches_successes_and_failures() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(&BasicAuthConfig {
            users: BTreeMap::from([("alice".to_owned(), hash)]),
        })
        .unwrap();
        let basic = |s: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(s);
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
        };
        assert_eq!(
            auth.check(Some(&basic("alice:s3cret"))).await,
            Verdict::Allowed
        );
        assert_eq!(auth.cached(), (1, 0));
        assert_eq!(
            auth.check(Some(&basic("alice:s3cret"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.check(Some(&basic("alice:wrong"))).await,
            Verdict::Denied
        );
        assert_eq!(auth.cached(), (1, 1));
        assert_eq!(
            auth.check(Some(&basic("alice:wrong"))).await,
            Verdict::Denied
        );
        assert_eq!(
            auth.cached(),
            (1, 1),
            "a repeated failure is answered from the cache"
        );
        assert_eq!(
            auth.check(Some(&basic("bob:s3cret"))).await,
            Verdict::Denied,
            "unknown user, same password"
        );
        assert_eq!(auth.check(None).await, Verdict::Denied);
        assert_eq!(auth.cached(), (1, 2));
    }

    #[test]
    fn the_caches_stay_bounded() {
        let mut map = HashMap::new();
        let now = Instant::now();
        for i in 0..(3 * FAILURE_CAPACITY as u32) {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            remember(&mut map, key, now, FAILURE_TTL, FAILURE_CAPACITY);
            assert!(map.len() <= FAILURE_CAPACITY);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_gets_429_and_a_verified_scraper_never_waits() {
        let hash = bcrypt::hash("s3cret", 10).unwrap();
        let auth = Arc::new(
            BasicAuth::new(&BasicAuthConfig {
                users: BTreeMap::from([("alice".to_owned(), hash)]),
            })
            .unwrap(),
        );
        let basic = |s: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(s);
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
        };
        let good = basic("alice:s3cret");
        assert_eq!(auth.check(Some(&good)).await, Verdict::Allowed);
        // Distinct wrong passwords: none is cached, each needs bcrypt.
        let flood: Vec<_> = (0..(MAX_WAITING + 24))
            .map(|i| {
                let auth = Arc::clone(&auth);
                let header = basic(&format!("alice:wrong{i}"));
                tokio::spawn(async move { auth.check(Some(&header)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // The cached scraper is answered without joining the queue.
        let started = Instant::now();
        assert_eq!(auth.check(Some(&good)).await, Verdict::Allowed);
        assert!(auth.waiting.load(Ordering::SeqCst) <= MAX_WAITING);
        let waited = started.elapsed();
        let mut busy = 0;
        for task in flood {
            match task.await.unwrap() {
                Verdict::Busy => busy += 1,
                verdict => assert_eq!(verdict, Verdict::Denied),
            }
        }
        assert!(
            busy >= 24,
            "{busy} of {} refused with 429",
            MAX_WAITING + 24
        );
        assert!(waited < Duration::from_millis(50), "{waited:?}");
    }
}
