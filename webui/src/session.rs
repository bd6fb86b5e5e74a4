//! Signed-in sessions: a random id in an HttpOnly, Secure, SameSite=Strict
//! cookie names a session held only in memory, which keeps the user's
//! Kubernetes client (with their bearer token), a CSRF token for every
//! form that changes something, and a one-shot message for the next page.
//! A session unused for longer than the idle limit is gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

/// The cookie naming the session.
pub const COOKIE: &str = "cairn_session";
/// The cookie of the sign-in form's CSRF token (before there is a session).
pub const LOGIN_COOKIE: &str = "cairn_login";

/// One signed-in user.
#[derive(Clone)]
pub struct Session {
    /// A client that sends the user's token to the API server.
    pub client: kube::Client,
    /// Who the token says it is (shown, never trusted: RBAC decides).
    pub user: String,
    /// The CSRF token every change must carry.
    pub csrf: String,
    last_seen: Instant,
    /// A message for the next page: (ok, text).
    flash: Option<(bool, String)>,
}

pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
    idle: Duration,
}

/// `n` random bytes as hex (session ids and CSRF tokens: 32 bytes).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares in time independent of where the strings differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(idle: Duration) -> Self {
        Sessions {
            inner: Mutex::new(HashMap::new()),
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session; returns its id.
    pub fn create(&self, client: kube::Client, user: String) -> String {
        let id = random_token();
        let session = Session {
            client,
            user,
            csrf: random_token(),
            last_seen: Instant::now(),
            flash: None,
        };
        let mut map = self.lock();
        let idle = self.idle;
        map.retain(|_, s| s.last_seen.elapsed() < idle);
        map.insert(id.clone(), session);
        id
    }

    /// The live session `id` (and marks it used), taking its message.
    pub fn get(&self, id: &str) -> Option<(Session, Option<(bool, String)>)> {
        let mut map = self.lock();
        let s = map.get_mut(id)?;
        if s.last_seen.elapsed() >= self.idle {
            map.remove(id);
            return None;
        }
        s.last_seen = Instant::now();
        let flash = s.flash.take();
        Some((s.clone(), flash))
    }

    /// Leaves `message` for the session's next page.
    pub fn flash(&self, id: &str, ok: bool, message: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some((ok, message));
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// How many sessions are held (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `Set-Cookie` value for `name=value`; an empty value clears it.
pub fn cookie(name: &str, value: &str) -> String {
    if value.is_empty() {
        format!("{name}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
    } else {
        format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict")
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> kube::Client {
        let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn sessions_expire_when_idle_and_carry_one_message() {
        let sessions = Sessions::new(Duration::from_millis(200));
        let id = sessions.create(client(), "alice".into());
        assert_eq!(id.len(), 64);
        let (s, flash) = sessions.get(&id).unwrap();
        assert_eq!((s.user.as_str(), flash), ("alice", None));
        sessions.flash(&id, false, "refused".into());
        assert_eq!(
            sessions.get(&id).unwrap().1,
            Some((false, "refused".into()))
        );
        assert_eq!(sessions.get(&id).unwrap().1, None, "shown once");
        assert!(sessions.get("nope").is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(sessions.get(&id).is_none(), "idle too long");
        assert!(sessions.is_empty());
        let other = sessions.create(client(), "bob".into());
        sessions.remove(&other);
        assert!(sessions.get(&other).is_none());
    }

    #[test]
    fn cookies_are_strict_and_parse() {
        let c = cookie(COOKIE, "abc");
        for part in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(part), "{c}");
        }
        assert!(cookie(COOKIE, "").contains("Max-Age=0"));
        let header = "a=1; cairn_session=xyz; b=2";
        assert_eq!(cookie_value(header, COOKIE), Some("xyz"));
        assert_eq!(cookie_value(header, "c"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
