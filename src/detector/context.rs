//! Context: what ssl.log, http.log and dns.log say about a connection's server, and the modifiers that move
//! an alert's level one step with a stated reason. Pure: time is event time in µs handed in by the detector;
//! every map is bounded in event time (the window length) and in size (`max_entries`, evictions counted).
//!
//! Joins (what names a conn record, first match wins):
//! 1. `sni` / `http_host`: an ssl.log `server_name` or http.log `host` with the record's `uid` (the ssl or
//!    http line normally comes long before the connection's conn.log line, which is written at its end);
//! 2. the same name learnt for the (originator, responder) pair within the window, from an ssl or http line
//!    of an earlier connection of the pair: Zeek splits an idle long session at its inactivity timeout and
//!    logs the rest as new connections (`OTH`, no service) without a handshake of their own;
//! 3. `dns`: a dns.log answer to the originator that held the responder's address, within the window.
//!
//! Modifiers (each switched off by its key in `[context]`; the level the duration reached moves by the sum
//! of the applied modifiers, clamped to one step; a demotion from low means no alert; no modifier makes an
//! alert where the duration reached no level):
//!
//! | reason | step | when |
//! |---|---|---|
//! | `named_tls_usual_port` | down | the connection's server name is a TLS SNI (its own, or its pair's on the same port) and the port is in `tls_ports`, and Zeek's `service` is unset or includes `ssl` |
//! | `common_destination` | down | at least `min_sources` internal sources were seen in the window, and the share of them that reached this destination (its name when known, else its address) is at least `common_fraction` |
//! | `unidentified_protocol` | up | a TCP connection whose Zeek `service` is unset, with no SNI or Host name, on a responder port not in `known_ports` (UDP media such as WebRTC runs on unregistered ports all day, so UDP is left out) |
//! | `no_dns_answer` | up | the originator's DNS answers are visible (some answer to it in the window) but none held the responder's address, and nothing else names it |
//! | `rare_destination` | up | at least `min_sources` internal sources seen, and the share that reached this destination is at most `rare_fraction` |

use super::prevalence::Prevalence;
use super::tracked::Tracked;
use crate::rules::Level;
use crate::zeek::context::{ContextKind, ContextRecord};
use crate::zeek::ConnRecord;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::IpAddr;

pub mod config;

/// Default `tls_ports`: HTTPS, alternative HTTPS, DNS over TLS, IMAPS, POP3S, SMTPS, Apple push, MQTT over TLS.
pub const DEFAULT_TLS_PORTS: &[u16] = &[443, 8443, 853, 993, 995, 465, 5223, 8883];
/// Default `known_ports`: the well-known services a workstation or server uses every day, plus the
/// `tls_ports`. A session on any other port with no protocol Zeek could identify gets `unidentified_protocol`.
pub const DEFAULT_KNOWN_PORTS: &[u16] = &[
    20, 21, 22, 23, 25, 53, 80, 88, 110, 123, 135, 137, 138, 139, 143, 389, 443, 445, 465, 587,
    636, 853, 993, 995, 1433, 1521, 3268, 3269, 3306, 3389, 5060, 5061, 5222, 5223, 5432, 5985,
    5986, 8080, 8443, 8883,
];
/// Default `max_entries` of each context map.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// `[context]`: the joins' bounds and the modifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextConfig {
    /// Entries per map (uid names, pair names, dns answers, prevalence) at most.
    pub max_entries: usize,
    pub tls_ports: Vec<u16>,
    pub known_ports: Vec<u16>,
    /// `common_destination` at this share of internal sources or more.
    pub common_fraction: f64,
    /// `rare_destination` at this share or less.
    pub rare_fraction: f64,
    /// Prevalence modifiers only once this many internal sources were seen in the window.
    pub min_sources: usize,
    /// Each modifier switched on (true) or off.
    pub named_tls_usual_port: bool,
    pub common_destination: bool,
    pub unidentified_protocol: bool,
    pub no_dns_answer: bool,
    pub rare_destination: bool,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            max_entries: DEFAULT_MAX_ENTRIES,
            tls_ports: DEFAULT_TLS_PORTS.to_vec(),
            known_ports: DEFAULT_KNOWN_PORTS.to_vec(),
            common_fraction: 0.5,
            rare_fraction: 0.02,
            min_sources: 10,
            named_tls_usual_port: true,
            common_destination: true,
            unidentified_protocol: true,
            no_dns_answer: true,
            rare_destination: true,
        }
    }
}

/// Where a server name came from (`longconn.domain_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainSource {
    Sni,
    HttpHost,
    Dns,
}

impl DomainSource {
    pub fn name(self) -> &'static str {
        match self {
            DomainSource::Sni => "sni",
            DomainSource::HttpHost => "http_host",
            DomainSource::Dns => "dns",
        }
    }
}

/// A modifier that was applied (`longconn.reasons`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NamedTlsUsualPort,
    CommonDestination,
    UnidentifiedProtocol,
    NoDnsAnswer,
    RareDestination,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::NamedTlsUsualPort => "named_tls_usual_port",
            Reason::CommonDestination => "common_destination",
            Reason::UnidentifiedProtocol => "unidentified_protocol",
            Reason::NoDnsAnswer => "no_dns_answer",
            Reason::RareDestination => "rare_destination",
        }
    }
    /// +1 raises, -1 lowers.
    pub fn step(self) -> i32 {
        match self {
            Reason::NamedTlsUsualPort | Reason::CommonDestination => -1,
            Reason::UnidentifiedProtocol | Reason::NoDnsAnswer | Reason::RareDestination => 1,
        }
    }
    /// The words for the alert's message.
    pub fn words(self) -> &'static str {
        match self {
            Reason::NamedTlsUsualPort => "TLS to a named server on its usual port",
            Reason::CommonDestination => "a destination many internal hosts use",
            Reason::UnidentifiedProtocol => "a protocol Zeek could not identify on an unusual port",
            Reason::NoDnsAnswer => "no DNS answer led the host to this address",
            Reason::RareDestination => "a destination almost no internal host uses",
        }
    }
}

/// The level after modifiers: `level` moved by the sum of `reasons`' steps, clamped to one step; None
/// when a low level is lowered. None stays None.
pub fn apply(level: Option<Level>, reasons: &[Reason]) -> Option<Level> {
    let level = level?;
    let step: i32 = reasons.iter().map(|r| r.step()).sum::<i32>().clamp(-1, 1);
    let i = level as i32 + step;
    if i < 0 {
        return None;
    }
    Some(Level::ALL[i.min(3) as usize])
}

/// A name and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    pub name: CompactString,
    pub source: DomainSource,
    /// The port of the connection the name was learnt on (SNI and Host).
    #[serde(default)]
    pub port: Option<u16>,
    /// Event time (µs) the name was learnt.
    pub at: i64,
}

/// Counters for the summary and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextStats {
    pub records: u64,
    pub named_uid: u64,
    pub named_pair: u64,
    pub named_dns: u64,
    pub evictions: u64,
}

/// Everything the context keeps, for the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextState {
    pub uids: Vec<(CompactString, Named)>,
    pub pairs: Vec<((IpAddr, IpAddr), Named)>,
    pub dns: Vec<((IpAddr, IpAddr), Named)>,
    pub dns_hosts: Vec<(IpAddr, i64)>,
    pub sources: Vec<(IpAddr, i64)>,
    pub reach: Vec<((Dest, IpAddr), i64)>,
    pub stats: ContextStats,
    /// Event time (µs) of the last sweep (absent from earlier builds' checkpoints: the first sweep after
    /// their restore comes at once).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub swept_at: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A destination for prevalence: its name when known, else its address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dest {
    Name(CompactString),
    Addr(IpAddr),
}

/// A uid's name and its place in the order uids expire in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidEntry {
    pub named: Named,
    /// When it joined the expiry order (the time of the first record that named it).
    pub queued_at: i64,
    /// Its place in the expiry order: uids leave in increasing `seq`.
    pub seq: u64,
}

/// The context maps (see the module doc). Every map but the prevalence tables is a [`Tracked`] map, so
/// that a checkpoint can write only what changed.
#[derive(Debug, Clone, Default)]
pub struct Context {
    uids: Tracked<CompactString, UidEntry>,
    /// uids in the order learnt (their `seq` order), to expire the oldest first: exactly the keys of
    /// `uids`, each once.
    uid_order: VecDeque<(i64, CompactString)>,
    /// The `seq` of the next uid learnt.
    uid_seq: u64,
    pairs: Tracked<(IpAddr, IpAddr), Named>,
    /// (originator, answered address) -> query.
    dns: Tracked<(IpAddr, IpAddr), Named>,
    /// Originators with a DNS answer seen: when last.
    dns_hosts: Tracked<IpAddr, i64>,
    /// Internal sources and the destinations they reached, for the prevalence modifiers.
    prevalence: Prevalence,
    /// Event time (µs) of the last sweep of expired entries.
    swept_at: i64,
    stats: ContextStats,
}

/// Inserts into a bounded map: when full, entries older than `oldest` go first; if none, the insert is
/// dropped and counted.
fn bounded_insert<K: std::hash::Hash + Eq + Clone, V>(
    map: &mut Tracked<K, V>,
    key: K,
    value: V,
    max: usize,
    oldest: i64,
    at: impl Fn(&V) -> i64,
    evictions: &mut u64,
) -> bool {
    if map.len() >= max && !map.contains_key(&key) {
        *evictions += map.retain(|_, v| at(v) >= oldest) as u64;
        if map.len() >= max {
            *evictions += 1;
            return false;
        }
    }
    map.insert(key, value);
    true
}

fn us(secs: f64) -> i64 {
    (secs * 1e6).round() as i64
}

impl Context {
    pub fn stats(&self) -> ContextStats {
        self.stats.clone()
    }

    /// Takes in one context record; `now` is the detector's watermark (µs) and `window` its length.
    pub fn observe(
        &mut self,
        r: &ContextRecord,
        cfg: &ContextConfig,
        now: Option<i64>,
        window: i64,
    ) {
        self.stats.records += 1;
        let at = us(r.ts);
        let oldest = now.unwrap_or(at).saturating_sub(window);
        if r.kind == ContextKind::Dns {
            if r.answers.is_empty() {
                return;
            }
            self.dns_hosts.insert(r.orig_h, at);
            let Some(name) = &r.name else { return };
            for a in &r.answers {
                let named = Named {
                    name: name.clone(),
                    source: DomainSource::Dns,
                    port: None,
                    at,
                };
                let max = cfg.max_entries;
                bounded_insert(
                    &mut self.dns,
                    (r.orig_h, *a),
                    named,
                    max,
                    oldest,
                    |n| n.at,
                    &mut self.stats.evictions,
                );
            }
            return;
        }
        let (Some(name), Some(resp)) = (&r.name, r.resp_h) else {
            return;
        };
        let named = Named {
            name: name.clone(),
            source: if r.kind == ContextKind::Ssl {
                DomainSource::Sni
            } else {
                DomainSource::HttpHost
            },
            port: r.resp_p,
            at,
        };
        // An SNI outranks a Host for the pair (a proxy's Host may name anything).
        let keep_pair = match self.pairs.get(&(r.orig_h, resp)) {
            Some(old) => {
                !(old.source == DomainSource::Sni
                    && named.source == DomainSource::HttpHost
                    && old.at >= oldest)
            }
            None => true,
        };
        if keep_pair {
            let max = cfg.max_entries;
            bounded_insert(
                &mut self.pairs,
                (r.orig_h, resp),
                named.clone(),
                max,
                oldest,
                |n| n.at,
                &mut self.stats.evictions,
            );
        }
        if !r.uid.is_empty() {
            self.expire_uids(oldest);
            if self.uids.len() >= cfg.max_entries {
                if let Some((_, old)) = self.uid_order.pop_front() {
                    self.uids.remove(&old);
                    self.stats.evictions += 1;
                }
            }
            if let Some(e) = self.uids.get_mut(&r.uid) {
                e.named = named;
            } else {
                let seq = self.uid_seq;
                self.uid_seq += 1;
                let e = UidEntry {
                    named,
                    queued_at: at,
                    seq,
                };
                self.uids.insert(r.uid.clone(), e);
                self.uid_order.push_back((at, r.uid.clone()));
            }
        }
    }

    /// Drops every entry older than the window, at most once per eighth of a window of event time, so the
    /// maps hold what the window holds and the cost is spread thin.
    pub fn sweep(&mut self, now: i64, window: i64) {
        if now.saturating_sub(self.swept_at) < window / 8 {
            return;
        }
        self.swept_at = now;
        let oldest = now.saturating_sub(window);
        self.expire_uids(oldest);
        self.pairs.retain(|_, n| n.at >= oldest);
        self.dns.retain(|_, n| n.at >= oldest);
        self.dns_hosts.retain(|_, at| *at >= oldest);
        self.prevalence.sweep(oldest);
    }

    fn expire_uids(&mut self, oldest: i64) {
        while let Some((at, _)) = self.uid_order.front() {
            if *at >= oldest {
                break;
            }
            if let Some((_, uid)) = self.uid_order.pop_front() {
                self.uids.remove(&uid);
            }
        }
    }

    /// The name of a conn record's server, if the context knows one (see the module doc for the order).
    /// Learns the name for the record's pair when it comes by uid.
    pub fn name_for(
        &mut self,
        rec: &ConnRecord,
        orig: IpAddr,
        resp: IpAddr,
        cfg: &ContextConfig,
        now: i64,
        window: i64,
    ) -> Option<Named> {
        let oldest = now.saturating_sub(window);
        if !rec.uid.is_empty() {
            if let Some(e) = self.uids.get(&rec.uid) {
                let n = e.named.clone();
                self.stats.named_uid += 1;
                let max = cfg.max_entries;
                bounded_insert(
                    &mut self.pairs,
                    (orig, resp),
                    n.clone(),
                    max,
                    oldest,
                    |n| n.at,
                    &mut self.stats.evictions,
                );
                return Some(n);
            }
        }
        if let Some(n) = self.pairs.get(&(orig, resp)).filter(|n| n.at >= oldest) {
            self.stats.named_pair += 1;
            return Some(n.clone());
        }
        if let Some(n) = self.dns.get(&(orig, resp)).filter(|n| n.at >= oldest) {
            self.stats.named_dns += 1;
            return Some(n.clone());
        }
        None
    }

    /// Counts an internal source reaching a destination (prevalence); `end` is the record's end (µs).
    pub fn reached(&mut self, src: IpAddr, dest: Dest, end: i64, cfg: &ContextConfig, oldest: i64) {
        self.prevalence.source(src, end);
        if self.prevalence.touch_reach(&dest, src, end) {
            return;
        }
        if self.prevalence.reach_len() >= cfg.max_entries {
            self.stats.evictions += self.prevalence.sweep(oldest) as u64;
            if self.prevalence.reach_len() >= cfg.max_entries {
                self.stats.evictions += 1;
                return;
            }
        }
        self.prevalence.add_reach(dest, src, end);
    }

    /// (sources that reached `dest` in the window, internal sources seen in the window): the maps hold
    /// exactly the entries seen since `oldest` once expired to it.
    fn prevalence_of(&mut self, dest: &Dest, oldest: i64) -> (usize, usize) {
        self.prevalence.sweep(oldest);
        self.prevalence.counts(dest)
    }

    /// The modifiers that apply to a record at alert time, in a stable order.
    #[allow(clippy::too_many_arguments)]
    pub fn reasons(
        &mut self,
        rec: &ConnRecord,
        orig: IpAddr,
        resp: IpAddr,
        named: Option<&Named>,
        cfg: &ContextConfig,
        now: i64,
        window: i64,
    ) -> Vec<Reason> {
        let oldest = now.saturating_sub(window);
        let mut out = Vec::new();
        let service = rec
            .service
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "-");
        let port = rec.resp_p;
        let by_handshake = named.filter(|n| n.source != DomainSource::Dns);
        if cfg.named_tls_usual_port {
            let tls_port = port.is_some_and(|p| cfg.tls_ports.contains(&p));
            let sni_here = named.is_some_and(|n| {
                n.source == DomainSource::Sni && (n.port.is_none() || n.port == port)
            });
            let tls_service = service.map_or(true, |s| s.split(',').any(|x| x == "ssl"));
            if tls_port && sni_here && tls_service {
                out.push(Reason::NamedTlsUsualPort);
            }
        }
        if cfg.common_destination || cfg.rare_destination {
            let dest = match named {
                Some(n) => Dest::Name(n.name.clone()),
                None => Dest::Addr(resp),
            };
            let (reached, total) = self.prevalence_of(&dest, oldest);
            if total >= cfg.min_sources && total > 0 {
                let share = reached as f64 / total as f64;
                if cfg.common_destination && share >= cfg.common_fraction {
                    out.push(Reason::CommonDestination);
                }
                if cfg.rare_destination && share <= cfg.rare_fraction {
                    out.push(Reason::RareDestination);
                }
            }
        }
        if cfg.unidentified_protocol && service.is_none() && by_handshake.is_none() {
            // TCP only: real-time media over UDP (WebRTC, VoIP, games) runs on unregistered ports with
            // no protocol Zeek names, all day long.
            let tcp = rec.proto.eq_ignore_ascii_case("tcp");
            if tcp && port.is_some_and(|p| !cfg.known_ports.contains(&p)) {
                out.push(Reason::UnidentifiedProtocol);
            }
        }
        if cfg.no_dns_answer && named.is_none() {
            let visible = self.dns_hosts.get(&orig).is_some_and(|at| *at >= oldest);
            if visible {
                out.push(Reason::NoDnsAnswer);
            }
        }
        out.sort();
        out
    }

    pub fn state(&self) -> ContextState {
        let mut s = self.state_without_prevalence();
        s.sources = self.prevalence.sources().collect();
        s.reach = self
            .prevalence
            .reach()
            .map(|(d, src, at)| ((d.clone(), src), at))
            .collect();
        // Deterministic order, so equal states serialize equally.
        s.sources.sort();
        s.reach.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        s
    }

    /// From now on, remember which entries change (for an incremental checkpoint).
    pub fn track_changes(&mut self) {
        self.prevalence.track_changes();
        self.uids.track();
        self.pairs.track();
        self.dns.track();
        self.dns_hosts.track();
    }

    /// A checkpoint saved every change so far.
    pub fn clear_changes(&mut self) {
        self.prevalence.clear_changes();
        self.uids.clear_changes();
        self.pairs.clear_changes();
        self.dns.clear_changes();
        self.dns_hosts.clear_changes();
    }

    /// Changes to the name maps are not tracked: they must be written whole.
    pub fn maps_all_changed(&self) -> bool {
        self.uids.all_changed()
            || self.pairs.all_changed()
            || self.dns.all_changed()
            || self.dns_hosts.all_changed()
    }

    /// The uid names (the binary checkpoint store saves and restores them one by one).
    pub fn uid_entries(&self) -> impl Iterator<Item = (&CompactString, &UidEntry)> + '_ {
        self.uids.iter()
    }

    /// The uid names changed since the last checkpoint, each as it is now (`None`: dropped).
    pub fn changed_uids(&self) -> impl Iterator<Item = (&CompactString, Option<&UidEntry>)> + '_ {
        self.uids.changed()
    }

    /// The pair names (`dns`: the DNS answers), for the store.
    pub fn pair_names(&self, dns: bool) -> impl Iterator<Item = (&(IpAddr, IpAddr), &Named)> + '_ {
        if dns { &self.dns } else { &self.pairs }.iter()
    }

    /// The pair names (`dns`: the DNS answers) changed since the last checkpoint.
    pub fn changed_pair_names(
        &self,
        dns: bool,
    ) -> impl Iterator<Item = (&(IpAddr, IpAddr), Option<&Named>)> + '_ {
        if dns { &self.dns } else { &self.pairs }.changed()
    }

    /// The originators with DNS answers, for the store.
    pub fn dns_hosts(&self) -> impl Iterator<Item = (&IpAddr, &i64)> + '_ {
        self.dns_hosts.iter()
    }

    pub fn changed_dns_hosts(&self) -> impl Iterator<Item = (&IpAddr, Option<&i64>)> + '_ {
        self.dns_hosts.changed()
    }

    /// Puts a saved uid name back, or drops it (`None`); [`Context::finish_restore`] once all are back.
    pub fn restore_uid(&mut self, uid: CompactString, e: Option<UidEntry>) {
        self.uids.restore(uid, e);
    }

    /// Puts a saved pair name (`dns`: a DNS answer) back, or drops it (`None`).
    pub fn restore_pair_name(&mut self, dns: bool, pair: (IpAddr, IpAddr), n: Option<Named>) {
        if dns { &mut self.dns } else { &mut self.pairs }.restore(pair, n);
    }

    pub fn restore_dns_host(&mut self, host: IpAddr, at: Option<i64>) {
        self.dns_hosts.restore(host, at);
    }

    /// Entries of the name maps: uids, pair names, DNS answers, DNS clients.
    pub fn names_len(&self) -> [u64; 4] {
        [
            self.uids.len() as u64,
            self.pairs.len() as u64,
            self.dns.len() as u64,
            self.dns_hosts.len() as u64,
        ]
    }

    /// Only the counters: what `checkpoint.json` keeps of the context when the binary store holds the
    /// maps (store version 2).
    pub fn state_counters(&self) -> ContextState {
        ContextState {
            stats: self.stats.clone(),
            swept_at: self.swept_at,
            ..ContextState::default()
        }
    }

    /// Room for what a restore will put back (uids, pair names, DNS answers, DNS clients).
    pub fn reserve_maps(&mut self, n: (usize, usize, usize, usize)) {
        self.uids.reserve(n.0);
        self.pairs.reserve(n.1);
        self.dns.reserve(n.2);
        self.dns_hosts.reserve(n.3);
    }

    /// Everything the name maps hold, in a fixed order, the expiry order and the next uid's place
    /// included (more than [`Context::state`] says): for tests that a restore is exact.
    #[cfg(test)]
    pub(crate) fn name_maps_exact(&self) -> String {
        let mut uids: Vec<_> = self.uids.iter().collect();
        uids.sort_by_key(|(_, e)| e.seq);
        let mut pairs: Vec<_> = self.pairs.iter().collect();
        pairs.sort_by_key(|(k, _)| **k);
        let mut dns: Vec<_> = self.dns.iter().collect();
        dns.sort_by_key(|(k, _)| **k);
        let mut hosts: Vec<_> = self.dns_hosts.iter().collect();
        hosts.sort();
        format!(
            "uids {uids:?}\norder {:?}\nnext {}\npairs {pairs:?}\ndns {dns:?}\nhosts {hosts:?}\nswept {}",
            self.uid_order, self.uid_seq, self.swept_at
        )
    }

    /// Rebuilds the uid expiry order from the uids put back (by their `seq`, as they were learnt).
    pub fn finish_restore(&mut self) {
        let mut order: Vec<(u64, i64, &CompactString)> = self
            .uids
            .iter()
            .map(|(u, e)| (e.seq, e.queued_at, u))
            .collect();
        order.sort_unstable_by_key(|o| o.0);
        self.uid_seq = order.last().map_or(0, |o| o.0.saturating_add(1));
        self.uid_order = order
            .into_iter()
            .map(|(_, at, u)| (at, u.clone()))
            .collect();
    }

    /// The prevalence entries (the binary checkpoint store saves and restores them one by one).
    pub fn prevalence(&self) -> &Prevalence {
        &self.prevalence
    }

    pub fn prevalence_mut(&mut self) -> &mut Prevalence {
        &mut self.prevalence
    }

    /// [`Context::state`] without the prevalence maps (saved apart, in the binary checkpoint store); maps
    /// in a deterministic order.
    pub fn state_without_prevalence(&self) -> ContextState {
        let mut s = ContextState {
            uids: self
                .uid_order
                .iter()
                .filter_map(|(_, u)| Some((u.clone(), self.uids.get(u)?.named.clone())))
                .collect(),
            pairs: self.pairs.iter().map(|(k, v)| (*k, v.clone())).collect(),
            dns: self.dns.iter().map(|(k, v)| (*k, v.clone())).collect(),
            dns_hosts: self.dns_hosts.iter().map(|(k, v)| (*k, *v)).collect(),
            sources: Vec::new(),
            reach: Vec::new(),
            stats: self.stats.clone(),
            swept_at: self.swept_at,
        };
        s.pairs.sort_by_key(|a| a.0);
        s.dns.sort_by_key(|a| a.0);
        s.dns_hosts.sort();
        s
    }

    /// The context `s` holds, but for the uids' expiry order: [`Context::finish_restore`] builds it once
    /// every saved entry is back (those of the binary store too).
    pub(super) fn from_state(s: &ContextState) -> Context {
        let mut c = Context {
            pairs: s.pairs.iter().cloned().collect(),
            dns: s.dns.iter().cloned().collect(),
            dns_hosts: s.dns_hosts.iter().copied().collect(),
            stats: s.stats.clone(),
            swept_at: s.swept_at,
            ..Context::default()
        };
        // The JSON form lists the uids in their expiry order and keeps no other time for it.
        for (seq, (u, n)) in (0u64..).zip(&s.uids) {
            let e = UidEntry {
                named: n.clone(),
                queued_at: n.at,
                seq,
            };
            c.uids.restore(u.clone(), Some(e));
        }
        for (src, at) in &s.sources {
            c.prevalence.restore_source(*src, Some(*at));
        }
        for ((dest, src), at) in &s.reach {
            c.prevalence.restore_reach(dest.clone(), *src, Some(*at));
        }
        c
    }
}

/// Alerts with every optional field set, for the alert module's field-table test.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::alert::Alert;
    use crate::detector::fixtures::{self, rec};
    use crate::detector::Detector;
    use crate::zeek::SourceKind;

    pub fn sample_alerts() -> Vec<Alert> {
        let t0 = 1_700_000_000.0;
        let mut d = Detector::new(&fixtures::config());
        let mut out = Vec::new();
        d.process_context(&ContextRecord {
            kind: ContextKind::Ssl,
            ts: t0,
            uid: "C1".into(),
            orig_h: "10.0.0.1".parse().expect("addr"),
            resp_h: Some("1.2.3.4".parse().expect("addr")),
            resp_p: Some(443),
            name: Some("a.example.com".into()),
            answers: Vec::new(),
        });
        let mut r = rec("C1", "10.0.0.1", "1.2.3.4", t0, 5.0 * 3600.0);
        r.service = Some("ssl".into());
        d.process(&r, SourceKind::Conn, &mut out);
        let mut d = Detector::new(&fixtures::config());
        let mut pieces = rec("C2", "10.0.0.2", "5.6.7.8", t0, 3.0 * 3600.0);
        pieces.resp_p = Some(4444);
        d.process(&pieces, SourceKind::Conn, &mut out);
        pieces.uid = "C3".into();
        pieces.ts = Some(t0 + 3.0 * 3600.0);
        d.process(&pieces, SourceKind::Conn, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::fixtures::{self, rec};
    use crate::detector::Detector;
    use crate::zeek::SourceKind;

    const T0: f64 = 1_700_000_000.0;
    const H: f64 = 3600.0;

    fn ctx(
        kind: ContextKind,
        uid: &str,
        orig: &str,
        resp: &str,
        ts: f64,
        name: &str,
    ) -> ContextRecord {
        ContextRecord {
            kind,
            ts,
            uid: uid.into(),
            orig_h: orig.parse().expect("addr"),
            resp_h: Some(resp.parse().expect("addr")),
            resp_p: Some(443),
            name: Some(name.into()),
            answers: Vec::new(),
        }
    }

    fn dns(orig: &str, ts: f64, name: &str, answer: &str) -> ContextRecord {
        ContextRecord {
            kind: ContextKind::Dns,
            ts,
            uid: "Cdns".into(),
            orig_h: orig.parse().expect("addr"),
            resp_h: Some("10.0.0.53".parse().expect("addr")),
            resp_p: Some(53),
            name: Some(name.into()),
            answers: vec![answer.parse().expect("addr")],
        }
    }

    fn tls(uid: &str, orig: &str, resp: &str, ts: f64, dur: f64) -> ConnRecord {
        ConnRecord {
            resp_p: Some(443),
            service: Some("ssl".into()),
            ..rec(uid, orig, resp, ts, dur)
        }
    }

    /// The step of an ssl.log line naming `uid` (from `orig` to `resp`) `name`.
    fn sni(uid: &str, orig: &str, resp: &str, ts: f64, name: &str) -> Step {
        Step::Ctx(ctx(ContextKind::Ssl, uid, orig, resp, ts, name))
    }

    /// One step of a join table: a context record, or a conn record with the name its alert must carry.
    enum Step {
        Ctx(ContextRecord),
        Conn(ConnRecord, Option<(&'static str, &'static str)>),
    }

    fn run(steps: Vec<Step>) {
        let mut d = Detector::new(&fixtures::config());
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Ctx(r) => d.process_context(&r),
                Step::Conn(r, want) => {
                    let mut out = Vec::new();
                    d.process(&r, SourceKind::Conn, &mut out);
                    let a = out.first().unwrap_or_else(|| panic!("step {i}: no alert"));
                    let got = a
                        .destination
                        .domain
                        .as_deref()
                        .zip(a.longconn.domain_source.as_deref());
                    assert_eq!(got, want, "step {i}");
                    if want.is_some_and(|(_, src)| src == "sni") {
                        assert_eq!(
                            a.tls.as_ref().map(|t| t.client.server_name.as_str()),
                            want.map(|w| w.0)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ssl_before_conn_names_by_uid() {
        run(vec![
            sni("C1", "10.0.0.1", "1.2.3.4", T0, "a.example.com"),
            Step::Conn(
                tls("C1", "10.0.0.1", "1.2.3.4", T0, 5.0 * H),
                Some(("a.example.com", "sni")),
            ),
        ]);
    }

    #[test]
    fn conn_before_ssl_is_unnamed_and_http_host_names_its_own_uid() {
        run(vec![
            Step::Conn(tls("C1", "10.0.0.1", "1.2.3.4", T0, 2.0 * H), None),
            sni("C1", "10.0.0.1", "1.2.3.4", T0, "late.example.com"),
            Step::Ctx(ctx(
                ContextKind::Http,
                "C2",
                "10.0.0.2",
                "5.6.7.8",
                T0 + H,
                "web.example.com",
            )),
            Step::Conn(
                rec("C2", "10.0.0.2", "5.6.7.8", T0 + H, 2.0 * H),
                Some(("web.example.com", "http_host")),
            ),
        ]);
    }

    #[test]
    fn a_pair_name_names_its_continuations_within_the_window() {
        // Named TLS lowers a level: 5h pieces (medium) still alert, at low.
        let mut cont = rec("C2", "10.0.0.1", "1.2.3.4", T0 + 3.0 * H, 9.0 * H);
        cont.resp_p = Some(443);
        cont.conn_state = Some("OTH".into());
        let mut late = rec("C3", "10.0.0.1", "1.2.3.4", T0 + 40.0 * H, 5.0 * H);
        late.resp_p = Some(443);
        run(vec![
            sni("C1", "10.0.0.1", "1.2.3.4", T0, "push.example.com"),
            Step::Conn(
                tls("C1", "10.0.0.1", "1.2.3.4", T0, 5.0 * H),
                Some(("push.example.com", "sni")),
            ),
            Step::Conn(cont, Some(("push.example.com", "sni"))),
            // A day later the pair's name is out of the window.
            Step::Conn(late, None),
        ]);
    }

    #[test]
    fn uid_names_expire_with_the_window() {
        let mut far = rec("X", "10.9.9.9", "9.9.9.9", T0 + 30.0 * H, 0.0);
        far.resp_p = Some(1);
        let mut d = Detector::new(&fixtures::config());
        d.process_context(&ctx(
            ContextKind::Ssl,
            "C1",
            "10.0.0.1",
            "1.2.3.4",
            T0,
            "old.example.com",
        ));
        d.process(&far, SourceKind::Conn, &mut Vec::new());
        // The next sweep (an eighth of a window later) drops the day-old name.
        let mut later = rec("Y", "10.9.9.9", "9.9.9.9", T0 + 34.0 * H, 0.0);
        later.resp_p = Some(1);
        d.process(&later, SourceKind::Conn, &mut Vec::new());
        assert!(d.snapshot().context.uids.is_empty());
        assert!(d.snapshot().context.pairs.is_empty());
    }

    #[test]
    fn a_dns_answer_names_only_the_host_that_asked() {
        run(vec![
            Step::Ctx(dns("10.0.0.1", T0, "api.example.com", "1.2.3.4")),
            Step::Conn(
                rec("C1", "10.0.0.1", "1.2.3.4", T0 + 1.0, 2.0 * H),
                Some(("api.example.com", "dns")),
            ),
            // Another host reaching the same address did not ask: no name for it.
            Step::Conn(rec("C2", "10.0.0.2", "1.2.3.4", T0 + 2.0, 2.0 * H), None),
        ]);
    }

    #[test]
    fn uid_map_is_bounded_and_counts_evictions() {
        let mut c = Context::default();
        let cfg = ContextConfig {
            max_entries: 2,
            ..ContextConfig::default()
        };
        for (i, uid) in ["C1", "C2", "C3"].iter().enumerate() {
            let r = ctx(
                ContextKind::Ssl,
                uid,
                "10.0.0.1",
                "1.2.3.4",
                T0 + i as f64,
                "x.example.com",
            );
            c.observe(&r, &cfg, None, (24.0 * H * 1e6) as i64);
        }
        assert_eq!(c.uids.len(), 2);
        assert!(!c.uids.contains_key("C1"));
        assert_eq!(c.stats().evictions, 1);
    }

    fn reasons_of(
        c: &mut Context,
        r: &ConnRecord,
        named: Option<&Named>,
        cfg: &ContextConfig,
    ) -> Vec<Reason> {
        let (o, d) = (r.orig_h.expect("orig"), r.resp_h.expect("resp"));
        c.reasons(
            r,
            o,
            d,
            named,
            cfg,
            (T0 * 1e6) as i64 + 1,
            (24.0 * H * 1e6) as i64,
        )
    }

    #[test]
    fn each_modifier_applies_when_its_rule_holds_and_not_otherwise() {
        let cfg = ContextConfig::default();
        let mut c = Context::default();
        let sni = Named {
            name: "a.example.com".into(),
            source: DomainSource::Sni,
            port: Some(443),
            at: (T0 * 1e6) as i64,
        };
        // named_tls_usual_port: SNI on 443 with service ssl, or a continuation without service.
        let r = tls("C1", "10.0.0.1", "1.2.3.4", T0, H);
        assert_eq!(
            reasons_of(&mut c, &r, Some(&sni), &cfg),
            vec![Reason::NamedTlsUsualPort]
        );
        let mut cont = r.clone();
        cont.service = None;
        assert_eq!(
            reasons_of(&mut c, &cont, Some(&sni), &cfg),
            vec![Reason::NamedTlsUsualPort]
        );
        // ...not on an unusual port, not without a name, not when Zeek saw another protocol.
        let mut odd = r.clone();
        odd.resp_p = Some(4444);
        assert!(reasons_of(&mut c, &odd, Some(&sni), &cfg).is_empty());
        assert!(reasons_of(&mut c, &r, None, &cfg).is_empty());
        let mut ssh = r.clone();
        ssh.service = Some("ssh".into());
        assert!(reasons_of(&mut c, &ssh, Some(&sni), &cfg).is_empty());
        // unidentified_protocol: TCP, no service, no name, a port outside known_ports.
        let mut unk = rec("C2", "10.0.0.1", "1.2.3.4", T0, H);
        unk.resp_p = Some(50516);
        assert_eq!(
            reasons_of(&mut c, &unk, None, &cfg),
            vec![Reason::UnidentifiedProtocol]
        );
        unk.proto = "udp".into();
        assert!(reasons_of(&mut c, &unk, None, &cfg).is_empty());
        unk.proto = "tcp".into();
        unk.resp_p = Some(22);
        assert!(reasons_of(&mut c, &unk, None, &cfg).is_empty());
        // Switched off, nothing applies.
        let off = ContextConfig {
            named_tls_usual_port: false,
            unidentified_protocol: false,
            ..ContextConfig::default()
        };
        assert!(reasons_of(&mut c, &r, Some(&sni), &off).is_empty());
        unk.resp_p = Some(50516);
        assert!(reasons_of(&mut c, &unk, None, &off).is_empty());
    }

    #[test]
    fn no_dns_answer_only_when_the_hosts_dns_is_visible() {
        let cfg = ContextConfig::default();
        let mut c = Context::default();
        let mut r = rec("C1", "10.0.0.1", "1.2.3.4", T0, H);
        r.resp_p = Some(22);
        assert!(
            reasons_of(&mut c, &r, None, &cfg).is_empty(),
            "no dns.log: no evidence"
        );
        c.observe(
            &dns("10.0.0.1", T0 - 10.0, "other.example.com", "5.5.5.5"),
            &cfg,
            None,
            (24.0 * H * 1e6) as i64,
        );
        assert_eq!(
            reasons_of(&mut c, &r, None, &cfg),
            vec![Reason::NoDnsAnswer]
        );
        let named = Named {
            name: "x.example.com".into(),
            source: DomainSource::Dns,
            port: None,
            at: (T0 * 1e6) as i64,
        };
        assert!(reasons_of(&mut c, &r, Some(&named), &cfg).is_empty());
    }

    #[test]
    fn prevalence_needs_enough_sources() {
        let cfg = ContextConfig::default();
        let mut c = Context::default();
        let now = (T0 * 1e6) as i64;
        let popular = Dest::Addr("1.1.1.1".parse().expect("addr"));
        for i in 0..60u8 {
            let src: IpAddr = format!("10.0.1.{i}").parse().expect("addr");
            if i < 40 {
                c.reached(src, popular.clone(), now, &cfg, 0);
            } else {
                c.reached(
                    src,
                    Dest::Addr(format!("9.9.9.{i}").parse().expect("addr")),
                    now,
                    &cfg,
                    0,
                );
            }
        }
        let r = rec("C1", "10.0.1.1", "1.1.1.1", T0, H);
        assert_eq!(
            reasons_of(&mut c, &r, None, &cfg),
            vec![Reason::CommonDestination]
        );
        let rare = rec("C2", "10.0.1.50", "9.9.9.50", T0, H);
        assert_eq!(
            reasons_of(&mut c, &rare, None, &cfg),
            vec![Reason::RareDestination]
        );
        // Nine sources are too few to say anything.
        let mut few = Context::default();
        for i in 0..9u8 {
            few.reached(
                format!("10.0.2.{i}").parse().expect("addr"),
                popular.clone(),
                now,
                &cfg,
                0,
            );
        }
        assert!(reasons_of(&mut few, &r, None, &cfg).is_empty());
    }

    proptest::proptest! {
        /// The prevalence counts (kept by an expiry queue) equal a count over every entry seen since the
        /// window's left edge, whatever the order of sightings and queries.
        #[test]
        fn prevalence_counts_equal_a_brute_force_count(
            steps in proptest::collection::vec((0u8..12, 0u8..4, 0i64..50, proptest::bool::ANY), 1..200),
            window in 1i64..40,
        ) {
            let cfg = ContextConfig::default();
            let mut c = Context::default();
            let mut seen: Vec<(IpAddr, Dest, i64)> = Vec::new();
            let mut now = 0i64;
            for (src, dest, advance, query) in steps {
                now += advance % 7;
                let oldest = now - window;
                let src: IpAddr = format!("10.0.0.{src}").parse().expect("addr");
                let dest = Dest::Addr(format!("9.9.9.{dest}").parse().expect("addr"));
                // Sightings end up to 10 before the watermark (out of order), some before the window.
                let end = now - (advance % 11);
                if query {
                    let got = c.prevalence_of(&dest, oldest);
                    let live = |e: &&(IpAddr, Dest, i64)| e.2 >= oldest;
                    let mut total: Vec<IpAddr> = seen.iter().filter(live).map(|e| e.0).collect();
                    total.sort();
                    total.dedup();
                    let mut reached: Vec<IpAddr> =
                        seen.iter().filter(live).filter(|e| e.1 == dest).map(|e| e.0).collect();
                    reached.sort();
                    reached.dedup();
                    proptest::prop_assert_eq!(got, (reached.len(), total.len()));
                } else {
                    c.reached(src, dest.clone(), end, &cfg, oldest);
                    seen.push((src, dest, end));
                }
            }
        }

        /// Modifiers never move a level by more than one step and never invent an alert.
        #[test]
        fn modifiers_move_at_most_one_step(level in proptest::option::of(0usize..4), picks in proptest::collection::vec(0usize..5, 0..6)) {
            let all = [
                Reason::NamedTlsUsualPort,
                Reason::CommonDestination,
                Reason::UnidentifiedProtocol,
                Reason::NoDnsAnswer,
                Reason::RareDestination,
            ];
            let reasons: Vec<Reason> = picks.iter().map(|i| all[*i]).collect();
            let level = level.map(|i| Level::ALL[i]);
            let got = apply(level, &reasons);
            match level {
                None => proptest::prop_assert_eq!(got, None),
                Some(l) => {
                    let from = l as i32;
                    let to = got.map_or(-1, |g| g as i32);
                    proptest::prop_assert!((to - from).abs() <= 1);
                }
            }
        }
    }
}
