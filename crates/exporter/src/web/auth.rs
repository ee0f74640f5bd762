//! Optional HTTP basic auth, on the model of Prometheus' exporter-toolkit web config: users with
//! bcrypt hashes in the config, so the file never holds a password.
//!
//! bcrypt is slow on purpose (a quarter of a second at cost 12), which makes it a CPU lever for
//! anyone who can reach the endpoint, and a wrong-password flood must not lock the real scraper
//! out. So:
//! - **one verification at a time**, on the blocking pool, never on the async workers that answer
//!   scrapes: a flood of wrong passwords costs at most one core;
//! - **fair turns** ([`super::bcrypt_queue`]): each source address waits in its own short line
//!   (429 beyond it), turns go round-robin across addresses, and an address without a recent
//!   failed check (and with a single check waiting) goes first, so a scraper on its own address
//!   waits for at most the check already running;
//! - **outcomes are cached**, keyed by a SHA-256 of user, password and configured hash (never the
//!   password itself): a success for [`SUCCESS_TTL`] after its last use, a failure for
//!   [`FAILURE_TTL`], each map bounded. A scraper in use never waits behind bcrypt again, and a
//!   client repeating one wrong password pays for it once. The caches and the turns survive a
//!   reload: an entry counts only for a user still configured with the same hash, so a removed
//!   user or a changed password loses access at once;
//! - an unknown user is checked against a decoy hash of the users' cost (validation requires one
//!   cost for all users, at most [`MAX_COST`]), so response times tell neither which user names
//!   exist nor which user a name is.
//!
//! Credentials are never logged: not the header, not the user name of a failed attempt.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};

use super::bcrypt_queue::BcryptQueue;
use super::settings::BasicAuthConfig;

/// Distinct successful (user, password) pairs remembered; a handful of users need a handful.
const SUCCESS_CAPACITY: usize = 256;
/// Distinct failed (user, password) pairs remembered.
const FAILURE_CAPACITY: usize = 4096;
/// How long a verified password is trusted without bcrypt after its last use: a scraper every
/// few minutes never pays for bcrypt again.
pub const SUCCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a wrong password is refused without bcrypt: short, so that a user who just fixed a
/// password is not locked out for long.
pub const FAILURE_TTL: Duration = Duration::from_secs(30);
/// The lowest bcrypt cost (bcrypt's own minimum).
pub const MIN_COST: u32 = 4;
/// The highest bcrypt cost accepted. Each step doubles a check's time: about 0.25 s at 12 on a
/// current core. A scraper's first check may wait for one other check and then runs its own, so
/// 12 keeps it well under a second; 13 would reach a second, and a cost of 20 or more would hold
/// the one bcrypt slot for minutes per check.
pub const MAX_COST: u32 = 12;

/// Checks that `hash` is a bcrypt hash this exporter can verify: `$2a$`, `$2b$` or `$2y$`, a cost
/// from [`MIN_COST`] to [`MAX_COST`], and 53 characters of salt and hash; returns its cost. The
/// message never repeats the value.
pub(crate) fn check_bcrypt_hash(hash: &str) -> Result<u32, String> {
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
    if !(MIN_COST..=MAX_COST).contains(&cost) {
        return Err(format!(
            "has bcrypt cost {cost}; use a cost from {MIN_COST:02} to {MAX_COST} (10 is usual): each step doubles the time of a check, and above {MAX_COST} a scraper's first check could take more than a second"
        ));
    }
    Ok(cost)
}

/// What is wrong with one configured user, by [`UserRules::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UserProblem {
    /// The name cannot be carried by HTTP basic auth (the message does not repeat it).
    Name(&'static str),
    /// The hash is not one this exporter verifies, or its cost differs from the other users'.
    Hash(String),
}

/// The rules every basic-auth user obeys, wherever it is configured (`[server.basic_auth]` in the
/// TOML file, `basic_auth_users` in the web config file), checked user by user in file order: a
/// name HTTP basic auth can carry, a bcrypt hash of a bounded cost ([`check_bcrypt_hash`]), and
/// one cost for all users, so that response times do not tell users apart (the decoy of an
/// unknown user has that cost too). Messages never repeat a name or a hash.
#[derive(Debug, Default)]
pub(crate) struct UserRules {
    cost: Option<u32>,
}

impl UserRules {
    pub(crate) fn check(&mut self, name: &str, hash: &str) -> Result<(), UserProblem> {
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
            // `user:password` pasted as a name is a secret: never repeated.
            return Err(UserProblem::Name(
                "the user name on this line is empty or contains `:` or control characters, which HTTP basic auth cannot carry (the name is not shown here, in case it holds a password)",
            ));
        }
        let cost = check_bcrypt_hash(hash).map_err(|problem| {
            UserProblem::Hash(format!(
                "{problem}; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'` (the value is not shown here, in case it is a password)"
            ))
        })?;
        let first = *self.cost.get_or_insert(cost);
        if cost != first {
            return Err(UserProblem::Hash(format!(
                "has bcrypt cost {cost} while other users have {first}; give every user the same cost (htpasswd -nBC {first}), so that response times do not tell users apart"
            )));
        }
        Ok(())
    }
}

/// A well-formed bcrypt hash of `cost` that no password is expected to match: verifying against
/// it takes as long as against a user's hash of that cost. (All-zero salt and digest; the
/// verification's result is ignored anyway.)
fn decoy_hash(cost: u32) -> String {
    format!("$2b${cost:02}${}", ".".repeat(53))
}

/// The outcome of a credentials check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A configured user and its password.
    Allowed,
    /// Missing, malformed or wrong credentials: 401.
    Denied,
    /// Not checked: this address (or flooding addresses together) already has too many checks
    /// waiting for bcrypt. 429, try again shortly.
    Busy,
}

/// What a reload of `[server.basic_auth]` keeps: the outcome caches and the bcrypt turns.
#[derive(Default)]
struct Memory {
    successes: Mutex<HashMap<[u8; 32], Instant>>,
    failures: Mutex<HashMap<[u8; 32], Instant>>,
    queue: Arc<BcryptQueue>,
}

/// The configured users and the caches of recent checks.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Unknown users are checked against this, for equal timing.
    decoy: String,
    memory: Arc<Memory>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps are valid whatever a panicking holder did; at worst they forget an entry.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BasicAuth {
    /// `None` when the config has no users (validation refuses that, so this is a guard).
    /// `previous`, the users this replaces on a reload, hands over its caches and bcrypt turns.
    pub fn new(config: &BasicAuthConfig, previous: Option<&BasicAuth>) -> Option<BasicAuth> {
        let cost = config
            .users
            .values()
            .filter_map(|hash| check_bcrypt_hash(hash).ok())
            .max()?;
        Some(BasicAuth {
            users: config.users.clone(),
            decoy: decoy_hash(cost),
            memory: previous.map_or_else(Arc::default, |p| Arc::clone(&p.memory)),
        })
    }

    /// Whether the `Authorization` header, from a client at `source`, carries a configured user
    /// and its password.
    pub async fn check(&self, authorization: Option<&HeaderValue>, source: IpAddr) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Verdict::Denied;
        };
        let source = source.to_canonical();
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let key = cache_key(&user, &password, &hash);
        if let Some(verdict) = self.cached(&key, known) {
            return verdict;
        }
        let memory = &self.memory;
        let Some(turn) = memory.queue.turn(source).await else {
            return Verdict::Busy;
        };
        // Another request may have verified the same credentials while this one waited.
        if let Some(verdict) = self.cached(&key, known) {
            return verdict;
        }
        // The turn goes with the computation: a request dropped mid-check (client gone) does
        // not free the slot while bcrypt still runs.
        let matched = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            bcrypt::verify(&password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = known && matched;
        let now = Instant::now();
        memory.queue.record(source, ok, now);
        if ok {
            let mut successes = lock(&memory.successes);
            remember(&mut successes, key, now, SUCCESS_TTL, SUCCESS_CAPACITY);
            Verdict::Allowed
        } else {
            let mut failures = lock(&memory.failures);
            remember(&mut failures, key, now, FAILURE_TTL, FAILURE_CAPACITY);
            Verdict::Denied
        }
    }

    /// The cached verdict for `key`, if fresh; a success's lifetime starts again with each use.
    fn cached(&self, key: &[u8; 32], known: bool) -> Option<Verdict> {
        let now = Instant::now();
        if known {
            let mut successes = lock(&self.memory.successes);
            if let Some(at) = successes.get_mut(key) {
                if now.duration_since(*at) < SUCCESS_TTL {
                    *at = now;
                    return Some(Verdict::Allowed);
                }
            }
        }
        let failures = lock(&self.memory.failures);
        fresh(&failures, key, now, FAILURE_TTL).then_some(Verdict::Denied)
    }

    #[cfg(test)]
    fn cache_sizes(&self) -> (usize, usize) {
        (
            lock(&self.memory.successes).len(),
            lock(&self.memory.failures).len(),
        )
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
    fn recognises_bcrypt_hashes_of_a_bounded_cost() {
        let good = bcrypt::hash("x", 4).unwrap().replacen("$2b$", "$2y$", 1);
        let good = good.as_str();
        assert_eq!(check_bcrypt_hash(good), Ok(4));
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
        assert_eq!(check_bcrypt_hash(&good.replace("$04$", "$12$")), Ok(12));
        let costly = check_bcrypt_hash(&good.replace("$04$", "$13$")).unwrap_err();
        assert!(
            costly.contains("has bcrypt cost 13; use a cost from 04 to 12"),
            "{costly}"
        );
    }

    #[test]
    fn the_decoy_has_the_users_cost_and_matches_nothing() {
        for cost in [4, 10, 12] {
            let decoy = decoy_hash(cost);
            assert_eq!(check_bcrypt_hash(&decoy), Ok(cost));
        }
        let decoy = decoy_hash(4);
        assert!(!bcrypt::verify("", &decoy).unwrap());
        assert!(!bcrypt::verify("password", &decoy).unwrap());
        let users = BTreeMap::from([
            ("alice".to_owned(), bcrypt::hash("a", 5).unwrap()),
            ("bob".to_owned(), bcrypt::hash("b", 5).unwrap()),
        ]);
        let auth = BasicAuth::new(&BasicAuthConfig { users }, None).unwrap();
        assert_eq!(auth.decoy, decoy_hash(5));
    }

    fn basic(s: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(s);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    const SCRAPER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[tokio::test]
    async fn verifies_and_caches_successes_and_failures() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let config = BasicAuthConfig {
            users: BTreeMap::from([("alice".to_owned(), hash)]),
        };
        let auth = BasicAuth::new(&config, None).unwrap();
        let check = |header: &str| {
            let header = basic(header);
            let auth = &auth;
            async move { auth.check(Some(&header), SCRAPER).await }
        };
        assert_eq!(check("alice:s3cret").await, Verdict::Allowed);
        assert_eq!(auth.cache_sizes(), (1, 0));
        assert_eq!(check("alice:s3cret").await, Verdict::Allowed);
        assert_eq!(check("alice:wrong").await, Verdict::Denied);
        assert_eq!(auth.cache_sizes(), (1, 1));
        assert_eq!(check("alice:wrong").await, Verdict::Denied);
        assert_eq!(
            auth.cache_sizes(),
            (1, 1),
            "a repeated failure is answered from the cache"
        );
        assert_eq!(
            check("bob:s3cret").await,
            Verdict::Denied,
            "unknown user, same password"
        );
        assert_eq!(auth.check(None, SCRAPER).await, Verdict::Denied);
        assert_eq!(auth.cache_sizes(), (1, 2));

        // A reload keeps the caches, but an entry counts only for the same user and hash.
        let reloaded = BasicAuth::new(&config, Some(&auth)).unwrap();
        assert_eq!(reloaded.cache_sizes(), (1, 2));
        let rotated = BasicAuthConfig {
            users: BTreeMap::from([("alice".to_owned(), bcrypt::hash("new", 4).unwrap())]),
        };
        let rotated = BasicAuth::new(&rotated, Some(&auth)).unwrap();
        assert_eq!(
            rotated.cached(&key_of(&rotated, "alice", "s3cret"), true),
            None,
            "a changed password is not taken from the cache"
        );
        assert_eq!(
            rotated.check(Some(&basic("alice:s3cret")), SCRAPER).await,
            Verdict::Denied
        );
        let removed = BasicAuthConfig {
            users: BTreeMap::from([("carol".to_owned(), bcrypt::hash("c", 4).unwrap())]),
        };
        let removed = BasicAuth::new(&removed, Some(&auth)).unwrap();
        assert_eq!(
            removed.check(Some(&basic("alice:s3cret")), SCRAPER).await,
            Verdict::Denied,
            "a removed user loses access at once"
        );
    }

    fn key_of(auth: &BasicAuth, user: &str, password: &str) -> [u8; 32] {
        cache_key(user, password.as_bytes(), &auth.users[user])
    }

    #[tokio::test]
    async fn a_success_is_renewed_by_use() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(
            &BasicAuthConfig {
                users: BTreeMap::from([("alice".to_owned(), hash)]),
            },
            None,
        )
        .unwrap();
        let key = key_of(&auth, "alice", "s3cret");
        let almost_expired = Instant::now() - SUCCESS_TTL + Duration::from_secs(1);
        lock(&auth.memory.successes).insert(key, almost_expired);
        assert_eq!(auth.cached(&key, true), Some(Verdict::Allowed));
        let renewed = lock(&auth.memory.successes)[&key];
        assert!(renewed > almost_expired + Duration::from_millis(500));
        let expired = Instant::now() - SUCCESS_TTL - Duration::from_secs(1);
        lock(&auth.memory.successes).insert(key, expired);
        assert_eq!(auth.cached(&key, true), None);
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
    async fn a_flood_from_other_addresses_never_locks_out_an_uncached_scraper() {
        use super::super::bcrypt_queue::MAX_WAITING_PER_SOURCE;
        // Cost 6: slow enough that the flood keeps the lines full.
        let hash = bcrypt::hash("s3cret", 6).unwrap();
        let users = (0..3)
            .map(|n| (format!("scraper{n}"), hash.clone()))
            .collect();
        let auth = Arc::new(BasicAuth::new(&BasicAuthConfig { users }, None).unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // 12 flooding addresses, each with more concurrent wrong passwords than its line holds.
        let flood: Vec<_> = (0..12u8 * 6)
            .map(|i| {
                let (auth, stop) = (Arc::clone(&auth), Arc::clone(&stop));
                let source = IpAddr::from([10, 1, 0, i % 12]);
                tokio::spawn(async move {
                    let mut answers = [0usize; 3];
                    for n in 0.. {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        let header = basic(&format!("scraper0:wrong-{i}-{n}"));
                        answers[auth.check(Some(&header), source).await as usize] += 1;
                        tokio::task::yield_now().await;
                    }
                    answers
                })
            })
            .collect();
        let full = healthlake_fake::wait::within(Duration::from_secs(30), || async {
            (auth.memory.queue.waiting() >= 12 * MAX_WAITING_PER_SOURCE / 2).then_some(())
        });
        assert!(full.await.is_some(), "the flood never filled the lines");
        // Each user's first check: nothing cached, the flood in full swing.
        for n in 0..3 {
            let header = basic(&format!("scraper{n}:s3cret"));
            assert_eq!(auth.check(Some(&header), SCRAPER).await, Verdict::Allowed);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut answers = [0usize; 3];
        for task in flood {
            for (total, n) in answers.iter_mut().zip(task.await.unwrap()) {
                *total += n;
            }
        }
        assert_eq!(answers[Verdict::Allowed as usize], 0);
        assert!(answers[Verdict::Busy as usize] > 0, "{answers:?}");
        assert!(answers[Verdict::Denied as usize] > 0, "{answers:?}");
    }
}
