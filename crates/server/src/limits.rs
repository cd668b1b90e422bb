//! Per-address limits: connections still sending their request head, listeners, and failed
//! logins (after too many, the address gets `429` for a while).
//!
//! An address is counted as a [`Key`]: IPv4 as it is, IPv6 by its /64, the prefix one
//! subscriber gets (a client cycling through its addresses is still one client). Behind a
//! trusted reverse proxy the listener and login limits apply to the address the proxy names
//! (the server passes that address); connections still sending their head are counted by the
//! socket's own address, and a trusted proxy's are not counted at all.
//!
//! **Bounded:** a [`PerIp`] table holds an entry only while a slot of that address is held,
//! so it never holds more entries than there are connections. [`Logins`] holds at most
//! [`LOGINS_MAX`] addresses: a full table first forgets the addresses whose window passed
//! and whose ban ended, then the oldest.
//!
//! Both tables are behind a leaf lock (ARCHITECTURE.md: nothing else is taken or called
//! while it is held).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sync::Mutex;

/// An address as the limits count it, in one word (a listener holds one): an IPv6 address's
/// first 64 bits; an IPv4 address under the prefix `0:ffff::/32`, which is reserved space no
/// client has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key(u64);

impl Key {
    /// No address: what a listener that holds no slot carries (`ff..ff` is multicast space).
    pub(crate) const NONE: Key = Key(u64::MAX);

    pub(crate) fn of(ip: IpAddr) -> Key {
        let v4 = |a: std::net::Ipv4Addr| Key(0x0000_ffff_0000_0000 | u64::from(u32::from(a)));
        match ip {
            IpAddr::V4(a) => v4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => v4(a),
                None => Key((u128::from(a) >> 64) as u64),
            },
        }
    }
}

/// How many of something each address may hold at once.
#[derive(Debug)]
pub(crate) struct PerIp {
    counts: Mutex<HashMap<Key, u32>>,
    /// 0: no limit (nothing is counted). A reload may change it: slots taken without a limit
    /// are not counted once one is set (a new limit counts from then on).
    cap: AtomicU32,
}

/// One held slot of a [`PerIp`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct IpSlot {
    table: Option<Arc<PerIp>>,
    key: Key,
}

impl PerIp {
    pub(crate) fn new(cap: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            counts: Mutex::new(HashMap::new()),
            cap: AtomicU32::new(u32::try_from(cap).unwrap_or(u32::MAX)),
        })
    }

    /// A new limit (a reload): slots held beyond it stay until given back; new ones wait.
    pub(crate) fn set_cap(&self, cap: usize) {
        self.cap
            .store(u32::try_from(cap).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// A slot for `ip`, or `None` when it holds `cap` already.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = self.take(ip)?;
        Some(IpSlot {
            table: (key != Key::NONE).then(|| self.clone()),
            key,
        })
    }

    /// [`PerIp::acquire`] for a holder that gives the slot back itself with
    /// [`PerIp::give_back`] (a listener keeps one word, not a guard): the key to give back
    /// ([`Key::NONE`] without a limit), or `None` when `ip` holds `cap` already.
    pub(crate) fn take(&self, ip: IpAddr) -> Option<Key> {
        let cap = self.cap.load(Ordering::Relaxed);
        if cap == 0 {
            return Some(Key::NONE);
        }
        let key = Key::of(ip);
        let mut counts = self.counts.lock();
        let n = counts.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(key)
    }

    /// Give back a slot [`PerIp::take`] gave (nothing for [`Key::NONE`]).
    pub(crate) fn give_back(&self, key: Key) {
        if key == Key::NONE {
            return;
        }
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&key);
            }
        }
    }

    /// Slots `ip` holds now.
    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> u32 {
        self.counts.lock().get(&Key::of(ip)).copied().unwrap_or(0)
    }

    /// Addresses holding a slot.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.counts.lock().len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(table) = self.table.take() {
            table.give_back(self.key);
        }
    }
}

/// Addresses [`Logins`] remembers at most.
pub(crate) const LOGINS_MAX: usize = 16_384;

/// Failed logins per address in a window; past the limit, the address is refused for a while.
#[derive(Debug)]
pub(crate) struct Logins {
    table: Mutex<HashMap<Key, Failures>>,
    /// Failures allowed per window (0: no limit). This and the next two are atomics so that a
    /// reload can change them ([`Logins::set_rule`]).
    max: AtomicU32,
    /// The window, in milliseconds.
    window_ms: AtomicU64,
    /// The ban, in milliseconds.
    ban_ms: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// Start of the current window.
    since: Instant,
    banned_until: Option<Instant>,
}

/// What a failed login did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Counted.
    Counted,
    /// The address reached the limit: refused from now on for the ban's length.
    Banned { failures: u32 },
}

impl Logins {
    pub(crate) fn new(max: u32, window: Duration, ban: Duration) -> Logins {
        let logins = Logins {
            table: Mutex::new(HashMap::new()),
            max: AtomicU32::new(0),
            window_ms: AtomicU64::new(0),
            ban_ms: AtomicU64::new(0),
        };
        logins.set_rule(max, window, ban);
        logins
    }

    /// A new rule (a reload): counts and bans under way are kept.
    pub(crate) fn set_rule(&self, max: u32, window: Duration, ban: Duration) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.window_ms.store(ms(window), Ordering::Relaxed);
        self.ban_ms.store(ms(ban), Ordering::Relaxed);
        self.max.store(max, Ordering::Relaxed);
    }

    fn max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// How long `ip` is still refused, if it is.
    pub(crate) fn banned(&self, ip: IpAddr) -> Option<Duration> {
        if self.max() == 0 {
            return None;
        }
        let now = Instant::now();
        let until = self.table.lock().get(&Key::of(ip))?.banned_until?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// A wrong password (or user) from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) -> Failed {
        let max = self.max();
        if max == 0 {
            return Failed::Counted;
        }
        let (window, ban) = (self.window(), self.ban());
        let now = Instant::now();
        let key = Key::of(ip);
        let mut table = self.table.lock();
        if table.len() >= LOGINS_MAX && !table.contains_key(&key) {
            table.retain(|_, f| {
                now.duration_since(f.since) < window || f.banned_until.is_some_and(|u| u > now)
            });
            if table.len() >= LOGINS_MAX
                && let Some(oldest) = table
                    .iter()
                    .filter(|(_, f)| f.banned_until.is_none_or(|u| u <= now))
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| *k)
            {
                table.remove(&oldest);
            }
            if table.len() >= LOGINS_MAX {
                // Every address held is banned: this one is counted by nobody, and is
                // refused like them only once there is room.
                return Failed::Counted;
            }
        }
        let f = table.entry(key).or_insert(Failures {
            count: 0,
            since: now,
            banned_until: None,
        });
        if f.banned_until.is_some_and(|u| u <= now) || now.duration_since(f.since) >= window {
            *f = Failures {
                count: 0,
                since: now,
                banned_until: None,
            };
        }
        f.count += 1;
        if f.count >= max && f.banned_until.is_none() {
            f.banned_until = Some(now + ban);
            return Failed::Banned { failures: f.count };
        }
        Failed::Counted
    }

    /// The ban's length.
    pub(crate) fn ban(&self) -> Duration {
        Duration::from_millis(self.ban_ms.load(Ordering::Relaxed))
    }

    /// The window failures are counted in.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn slots_are_capped_per_address_and_given_back() {
        let t = PerIp::new(2);
        let a = t.acquire(ip("192.0.2.1")).expect("one");
        let b = t.acquire(ip("192.0.2.1")).expect("two");
        assert!(t.acquire(ip("192.0.2.1")).is_none(), "a third");
        let other = t.acquire(ip("192.0.2.2")).expect("another address");
        drop(a);
        let c = t.acquire(ip("192.0.2.1")).expect("room again");
        assert_eq!(t.held(ip("192.0.2.1")), 2);
        drop((b, c, other));
        assert_eq!(t.addresses(), 0, "no entry without a slot");
        // An IPv6 client's /64 is one address; an IPv4-mapped one is its IPv4 address.
        let t = PerIp::new(1);
        let _x = t.acquire(ip("2001:db8:1:2::1")).expect("one");
        assert!(t.acquire(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(t.acquire(ip("2001:db8:1:3::1")).is_some());
        let _y = t.acquire(ip("198.51.100.7")).expect("v4");
        assert!(t.acquire(ip("::ffff:198.51.100.7")).is_none());
        // No cap: nothing counted.
        let t = PerIp::new(0);
        let _z: Vec<_> = (0..1000)
            .map(|_| t.acquire(ip("192.0.2.1")).expect("unlimited"))
            .collect();
        assert_eq!(t.addresses(), 0);
    }

    #[test]
    fn too_many_failed_logins_ban_an_address_for_a_while() {
        let l = Logins::new(3, Duration::from_secs(60), Duration::from_millis(200));
        let bad = ip("203.0.113.9");
        assert_eq!(l.failed(bad), Failed::Counted);
        assert_eq!(l.failed(bad), Failed::Counted);
        assert!(l.banned(bad).is_none());
        assert_eq!(l.failed(bad), Failed::Banned { failures: 3 });
        assert!(
            l.banned(bad)
                .is_some_and(|d| d <= Duration::from_millis(200))
        );
        assert!(l.banned(ip("203.0.113.10")).is_none(), "others are not");
        // Failures while banned are counted but do not extend the ban.
        assert_eq!(l.failed(bad), Failed::Counted);
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.banned(bad).is_none(), "the ban ends");
        assert_eq!(l.failed(bad), Failed::Counted, "a fresh window");
    }

    #[test]
    fn the_login_table_stays_bounded() {
        let l = Logins::new(5, Duration::from_secs(60), Duration::from_secs(60));
        for i in 0..(LOGINS_MAX as u32 + 500) {
            l.failed(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        assert!(l.table.lock().len() <= LOGINS_MAX);
    }
}
