//! The detector: the pure core that turns [`ConnRecord`]s into [`Alert`]s by wiring the filters and
//! thresholds of [`crate::rules`] to the sliding [`crate::window`]. No I/O, no clock, no tokio: the
//! daemon, `replay` and tests all drive it the same way, record by record, so they raise the same alerts.
//!
//! Per record: count it; without `ts` it is skipped; its end advances the watermark (even if it is then
//! filtered or has no addresses, since the watermark is over every parsed record); without both addresses it
//! is skipped; filters may leave it out; otherwise its group is found (advanced to the current watermark),
//! the cumulative episode is closed if the measure fell below the lowest level, the record is added, and the
//! single and cumulative rules run. [`Detector::snapshot`] captures everything (window items, watermark,
//! rule state, counters) so that [`Detector::restore`] continues exactly: the same later records give the
//! same alerts with the same `event.id`s.
//!
//! Interim records (open_conn.log, conn_long.log) repeat connections that are still open; the per-uid rules
//! that keep them from counting twice live in [`interim`].

use crate::alert::{self, Alert};
use crate::rules::{
    Allow, CumulativeAlert, CumulativeConfig, FilterConfig, FilterReason, FirstRecord, Level,
    Levels, Measure, Override, RuleState, Rules, Thresholds,
};
use crate::window::{self, micros, GroupBy, GroupKey, Window, WindowConfig, WindowState};
use crate::zeek::{transport, ConnRecord, Field, FieldSet, ParseOptions, SourceKind};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

pub mod cold;
pub mod context;
pub mod interim;
pub mod prevalence;
mod tracked;

use cold::{ColdBox, Uid};
use context::{Context, ContextConfig, ContextState, ContextStats, Dest, Reason};

use interim::{Admit, Interim};
pub use interim::{InterimState, OpenConn, CLOSED_MIN_US, MAX_CLOSED};

/// Version of [`DetectorState`]'s layout.
pub const STATE_VERSION: u32 = 1;

/// The record fields the detector reads; `run` and `replay` parse only these (the rest of a line is skipped
/// over), so both see the same records.
pub const FIELDS: FieldSet = FieldSet::ALL
    .without(Field::History)
    .without(Field::LocalOrig)
    .without(Field::LocalResp)
    .without(Field::OrigPkts)
    .without(Field::RespPkts);

/// How `run` and `replay` parse records for the detector.
pub fn parse_options() -> ParseOptions {
    ParseOptions {
        wanted: FIELDS,
        ..ParseOptions::default()
    }
}

/// The prefetch hints given for a record before `process` takes it: how many records ahead, which stage
/// (see [`window::Window::prefetch`]). Each stage reads what the one before fetched; the distances leave
/// each fetch the time of about three records' work.
pub const PREFETCH_AHEAD: [(usize, window::Prefetch); 4] = [
    (12, window::Prefetch::Bucket),
    (6, window::Prefetch::Slot),
    (3, window::Prefetch::Heap),
    (1, window::Prefetch::Inner),
];

/// What the detector keeps per group besides its intervals: rule state and the figures alerts report,
/// covering the connections taken in since the group last had nothing inside the window.
///
/// What every record reads or writes is inline: the counters and times, the rule state and the newest uid
/// (packed, [`Uid`]); the rest (older uids, server names, an episode's first record other than the newest
/// uid at `first_seen`) is in the cold part ([`cold`]), allocated the first time the group needs any of
/// it, so that a one-connection group has none. Equality is of what the group holds, not of where.
/// Saved (JSON and the binary store) in the layout of [`SavedGroup`].
#[derive(Debug, Clone, Default)]
pub struct GroupData {
    pub connections: u64,
    pub longest_us: i64,
    pub total_bytes: u64,
    /// Changed by the group's methods only: the episode's first record may be "the newest uid at
    /// `first_seen`" ([`FirstRecord::Newest`]).
    pub first_seen: i64,
    pub last_seen: i64,
    pub rules: RuleState,
    newest: Uid,
    cold: Option<ColdBox>,
}

/// At most this many names are listed in a cumulative alert.
pub const MAX_NAMES: usize = 10;

/// A group as checkpoints save it (the layout of the JSON checkpoint, field for field; the binary store
/// reads into it too, with its uids already in the form a group keeps them, `U` = [`Uid`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "U: Serialize",
    deserialize = "U: Deserialize<'de> + Default"
))]
pub struct SavedGroup<U = CompactString> {
    pub rules: SavedRules<U>,
    pub connections: u64,
    pub longest_us: i64,
    pub total_bytes: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub uids: SavedUids<U>,
    /// Server names seen for the group's connections (at most [`MAX_NAMES`]), for cumulative alerts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<CompactString>,
}

/// [`RuleState`] as checkpoints save it, the episode's first record included.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "U: Serialize",
    deserialize = "U: Deserialize<'de> + Default"
))]
pub struct SavedRules<U = CompactString> {
    pub single_level: Option<Level>,
    pub single_at: i64,
    pub episode_level: Option<Level>,
    pub last_alert_at: i64,
    pub repeats: u32,
    /// The episode's first record: uid and ts (µs); `None` until the episode has one.
    pub episode_first: Option<(U, i64)>,
}

/// A group's uids as checkpoints save them: the newest, and the older ones (oldest first) once there are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "U: Serialize",
    deserialize = "U: Deserialize<'de> + Default"
))]
pub struct SavedUids<U = CompactString> {
    pub newest: U,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older: Option<Vec<U>>,
}

impl From<&GroupData> for SavedGroup {
    fn from(d: &GroupData) -> SavedGroup {
        let r = &d.rules;
        SavedGroup {
            rules: SavedRules {
                single_level: r.single_level,
                single_at: r.single_at,
                episode_level: r.episode_level,
                last_alert_at: r.last_alert_at,
                repeats: r.repeats,
                episode_first: d.episode_first(),
            },
            connections: d.connections,
            longest_us: d.longest_us,
            total_bytes: d.total_bytes,
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            uids: SavedUids {
                newest: d.newest.to_compact(),
                older: (d.older_len() > 0).then(|| d.older_uids().map(Uid::to_compact).collect()),
            },
            names: d.names().to_vec(),
        }
    }
}

impl<U> SavedGroup<U> {
    /// The same group with each uid through `f` (text to packed, say).
    pub fn map_uids<V>(self, f: impl Fn(&U) -> V) -> SavedGroup<V> {
        let r = self.rules;
        SavedGroup {
            rules: SavedRules {
                single_level: r.single_level,
                single_at: r.single_at,
                episode_level: r.episode_level,
                last_alert_at: r.last_alert_at,
                repeats: r.repeats,
                episode_first: r.episode_first.map(|(u, ts)| (f(&u), ts)),
            },
            connections: self.connections,
            longest_us: self.longest_us,
            total_bytes: self.total_bytes,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            uids: SavedUids {
                newest: f(&self.uids.newest),
                older: self.uids.older.map(|o| o.iter().map(&f).collect()),
            },
            names: self.names,
        }
    }
}

impl From<SavedGroup> for GroupData {
    fn from(s: SavedGroup) -> GroupData {
        GroupData::from(s.map_uids(|u| Uid::new(u)))
    }
}

impl From<SavedGroup<Uid>> for GroupData {
    /// Of more older uids than a group keeps ([`cold::MAX_OLDER`]; only a hand-made checkpoint has more),
    /// the newest are kept.
    fn from(s: SavedGroup<Uid>) -> GroupData {
        let r = s.rules;
        let mut d = GroupData {
            connections: s.connections,
            longest_us: s.longest_us,
            total_bytes: s.total_bytes,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            rules: RuleState {
                single_at: r.single_at,
                last_alert_at: r.last_alert_at,
                repeats: r.repeats,
                single_level: r.single_level,
                episode_level: r.episode_level,
                episode_first: FirstRecord::None,
            },
            newest: s.uids.newest,
            cold: None,
        };
        if let Some(older) = s.uids.older.filter(|o| !o.is_empty()) {
            let skip = older.len().saturating_sub(cold::MAX_OLDER);
            let c = d.cold_mut(older.len() - skip);
            for u in older.into_iter().skip(skip) {
                c.push_older(u);
            }
        }
        if !s.names.is_empty() {
            *d.cold_mut(0).names_mut() = s.names;
        }
        d.set_episode_first(r.episode_first);
        d
    }
}

impl Serialize for GroupData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SavedGroup::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for GroupData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GroupData, D::Error> {
        <SavedGroup>::deserialize(d).map(GroupData::from)
    }
}

impl PartialEq for GroupData {
    fn eq(&self, o: &GroupData) -> bool {
        let (a, b) = (&self.rules, &o.rules);
        self.connections == o.connections
            && self.longest_us == o.longest_us
            && self.total_bytes == o.total_bytes
            && self.first_seen == o.first_seen
            && self.last_seen == o.last_seen
            && a.single_at == b.single_at
            && a.last_alert_at == b.last_alert_at
            && a.repeats == b.repeats
            && a.single_level == b.single_level
            && a.episode_level == b.episode_level
            && self.episode_first_uid() == o.episode_first_uid()
            && self.newest == o.newest
            && self.older_uids().eq(o.older_uids())
            && self.names() == o.names()
    }
}

impl window::Hold for GroupData {
    /// A group is kept while its last single alert still suppresses others.
    fn hold_until(&self) -> i64 {
        self.rules
            .single_level
            .map_or(i64::MIN, |_| self.rules.single_at)
    }

    /// The cold part, whose ring of older uids the next record of the group moves.
    fn prefetch(&self) {
        if let Some(c) = &self.cold {
            c.prefetch();
        }
    }

    fn prefetch_inner(&self) {
        if let Some(c) = &self.cold {
            c.prefetch_ring();
        }
    }
}

impl GroupData {
    /// The cold part, allocated (with room for `older` older uids) if the group has none yet.
    fn cold_mut(&mut self, older: usize) -> &mut ColdBox {
        self.cold.get_or_insert_with(|| ColdBox::new(older))
    }

    /// The newest uid.
    pub fn newest_uid(&self) -> &Uid {
        &self.newest
    }

    /// How many older uids there are (at most [`alert::MAX_UIDS`] - 1).
    pub fn older_len(&self) -> usize {
        self.cold.as_ref().map_or(0, ColdBox::older_len)
    }

    /// The older uids, oldest first.
    pub fn older_uids(&self) -> impl Iterator<Item = &Uid> + '_ {
        self.cold.iter().flat_map(ColdBox::older)
    }

    /// Server names seen for the group's connections (at most [`MAX_NAMES`]), for cumulative alerts.
    pub fn names(&self) -> &[CompactString] {
        self.cold.as_ref().map_or(&[], ColdBox::names)
    }

    /// The episode's first record: uid and ts (µs); `None` until the episode has one.
    pub fn episode_first(&self) -> Option<(CompactString, i64)> {
        self.episode_first_uid().map(|(u, ts)| (u.to_compact(), ts))
    }

    /// [`GroupData::episode_first`], the uid as kept.
    pub fn episode_first_uid(&self) -> Option<(&Uid, i64)> {
        match self.rules.episode_first {
            FirstRecord::None => None,
            FirstRecord::Newest => Some((&self.newest, self.first_seen)),
            FirstRecord::Apart => self
                .cold
                .as_ref()
                .and_then(ColdBox::episode_first)
                .map(|(u, ts)| (u, *ts)),
        }
    }

    /// Sets the episode's first record: inline (a flag) when it is the newest uid at `first_seen`.
    fn set_episode_first(&mut self, first: Option<(Uid, i64)>) {
        self.rules.episode_first = match first {
            None => FirstRecord::None,
            Some((u, ts)) if u == self.newest && ts == self.first_seen => FirstRecord::Newest,
            Some(first) => {
                self.cold_mut(0).set_episode_first(Some(first));
                self.rules.episode_first = FirstRecord::Apart;
                return;
            }
        };
        // A first record kept apart before is not any more: a cold part left with nothing goes.
        if let Some(c) = &mut self.cold {
            c.set_episode_first(None);
            if c.is_empty() {
                self.cold = None;
            }
        }
    }

    /// Before the newest uid or `first_seen` changes: an episode's first record that is them moves to the
    /// cold part.
    fn pin_first(&mut self) {
        if self.rules.episode_first == FirstRecord::Newest {
            let first = (self.newest.clone(), self.first_seen);
            self.cold_mut(0).set_episode_first(Some(first));
            self.rules.episode_first = FirstRecord::Apart;
        }
    }

    /// Nothing left in the window (the group is only held for single-alert suppression): the figures
    /// alerts report start over, the rule state (the episode's first record included) stays.
    fn start_over(&mut self) {
        let first = self.episode_first_uid().map(|(u, ts)| (u.clone(), ts));
        *self = GroupData {
            rules: std::mem::take(&mut self.rules),
            ..GroupData::default()
        };
        self.set_episode_first(first);
    }

    /// The uids, oldest first: at most [`alert::MAX_UIDS`], the newest last.
    fn in_order(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .older_uids()
            .map(|u| u.with_str(str::to_string))
            .collect();
        v.push(self.newest.with_str(str::to_string));
        v
    }

    /// The group's figures for a cumulative alert, `first` its episode's first record; `measure`, `sum`
    /// and `covered` in µs.
    fn figures<'a>(
        &'a self,
        first: Option<(&'a str, i64)>,
        measure: i64,
        sum: i64,
        covered: i64,
    ) -> alert::GroupFigures<'a> {
        alert::GroupFigures {
            connections: self.connections,
            longest_us: self.longest_us,
            total_bytes: self.total_bytes,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            episode_first: first,
            uids: self.in_order(),
            names: self.names(),
            measure,
            sum,
            covered,
        }
    }

    /// A newer record of a connection already counted: figures change, the connection count does not.
    fn replace(&mut self, rec: &ConnRecord, ts: i64, end: i64, dur: i64, old_bytes: u64) {
        if ts < self.first_seen {
            self.pin_first();
        }
        self.first_seen = self.first_seen.min(ts);
        self.last_seen = self.last_seen.max(end);
        self.longest_us = self.longest_us.max(dur);
        self.total_bytes = self
            .total_bytes
            .saturating_sub(old_bytes)
            .saturating_add(rec.total_bytes());
    }

    /// A record of a connection not counted yet, `uid` its uid.
    fn add(&mut self, rec: &ConnRecord, uid: Uid, ts: i64, end: i64, dur: i64) {
        if self.connections > 0 {
            // The newest uid becomes an older one: one allocation for the cold part holds it and a first
            // record pinned below.
            self.cold_mut(1);
        }
        self.pin_first();
        if self.connections == 0 {
            self.first_seen = ts;
            self.last_seen = end;
        } else {
            self.first_seen = self.first_seen.min(ts);
            self.last_seen = self.last_seen.max(end);
        }
        self.connections += 1;
        self.longest_us = self.longest_us.max(dur);
        self.total_bytes = self.total_bytes.saturating_add(rec.total_bytes());
        if self.connections == 1 {
            self.newest = uid;
        } else {
            let older = std::mem::replace(&mut self.newest, uid);
            self.cold_mut(1).push_older(older);
        }
    }

    /// Counts a server name for the group (at most [`MAX_NAMES`], each once).
    fn add_name(&mut self, name: &CompactString) {
        let names = self.names();
        if names.len() < MAX_NAMES && !names.contains(name) {
            self.cold_mut(0).names_mut().push(name.clone());
        }
    }
}

/// Counters for logs and the `replay` summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorStats {
    pub records_seen: u64,
    pub records_used: u64,
    pub skipped_no_ts: u64,
    pub skipped_no_addr: u64,
    pub filtered_never: u64,
    pub filtered_direction: u64,
    pub filtered_state: u64,
    pub filtered_allow: u64,
    pub groups_tracked: u64,
    pub groups_expired: u64,
    pub evictions: u64,
    /// Indexed by `Level as usize`.
    pub alerts_single: [u64; 4],
    pub alerts_cumulative: [u64; 4],
    /// Records from interim logs (open_conn, conn_long) that were used.
    #[serde(default)]
    pub interim_records: u64,
    /// Interim records ignored: their connection was closed, or a newer record of it was already seen.
    #[serde(default)]
    pub interim_ignored: u64,
    /// Open connections forgotten after `interim_timeout` without news.
    #[serde(default)]
    pub interim_expired: u64,
    /// Open connections tracked now.
    #[serde(default)]
    pub interim_open: u64,
}

impl DetectorStats {
    pub fn filtered(&self, r: FilterReason) -> u64 {
        match r {
            FilterReason::Never => self.filtered_never,
            FilterReason::Direction => self.filtered_direction,
            FilterReason::State => self.filtered_state,
            FilterReason::Allow => self.filtered_allow,
        }
    }
}

/// Everything a restart needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorState {
    pub version: u32,
    pub window: WindowState<GroupData>,
    pub stats: DetectorStats,
    /// Open and recently closed uids of interim logs (absent in checkpoints written before issue 6).
    #[serde(default)]
    pub interim: InterimState,
    /// The context maps (absent in checkpoints written before issue 12).
    #[serde(default)]
    pub context: ContextState,
}

/// Where the last record [`Detector::process`] used left its group: what `replay`'s tuning summary reads.
/// Not part of the state (a restart forgets it); the alerts that record raised belong to this group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFigure {
    pub key: GroupKey,
    pub group_by: GroupBy,
    /// The record's duration, µs.
    pub duration_us: i64,
    /// The group's cumulative measure after the record, µs.
    pub measure_us: i64,
    /// The thresholds that applied to the record (an override's included).
    pub single: Thresholds,
    pub cumulative: Thresholds,
    /// The server's name, when context named it.
    pub name: Option<CompactString>,
}

/// The streaming detector (see the module doc).
#[derive(Debug, Clone)]
pub struct Detector {
    rules: Rules,
    sensor: String,
    window: Window<GroupData>,
    stats: DetectorStats,
    interim: Interim,
    context: Context,
    context_cfg: ContextConfig,
    /// Interim records are expected (an interim source is configured, or replay was told so): final
    /// records then remember their uid as closed. Without interim logs that would be memory for nothing.
    expect_interim: bool,
    /// See [`Detector::last_figure`].
    last: Option<GroupFigure>,
}

/// What the detector needs to know: the window, the rules, the sensor's name for its alerts, and the kinds
/// of log its records come from. The daemon's `Config` makes one (`Config::detector`); tests build it in
/// code.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// `observer.name` in every alert.
    pub sensor_name: String,
    pub window: WindowConfig,
    pub single: Levels,
    pub cumulative: CumulativeConfig,
    pub filter: FilterConfig,
    pub allow: Vec<Allow>,
    pub overrides: Vec<Override>,
    /// The kinds of the configured sources: with an interim kind, final records remember their uid.
    pub source_kinds: Vec<SourceKind>,
    /// `[context]`: the joins' bounds and the level modifiers.
    pub context: ContextConfig,
}

fn expects_interim(cfg: &DetectorConfig) -> bool {
    cfg.source_kinds.iter().any(|k| k.is_interim())
}

impl Detector {
    pub fn new(cfg: &DetectorConfig) -> Detector {
        let rules = Rules::new(cfg);
        Detector {
            window: Window::new(rules.window_us, cfg.window.group_by, cfg.window.max_groups),
            rules,
            sensor: cfg.sensor_name.clone(),
            stats: DetectorStats::default(),
            interim: Interim::default(),
            context: Context::default(),
            context_cfg: cfg.context.clone(),
            expect_interim: expects_interim(cfg),
            last: None,
        }
    }

    /// Applies new thresholds, filters, sensor name and window settings (SIGHUP), keeping window contents
    /// and alert state. A changed `group_by` empties the window (groups cannot be re-keyed).
    pub fn reconfigure(&mut self, cfg: &DetectorConfig) {
        self.rules = Rules::new(cfg);
        self.sensor = cfg.sensor_name.clone();
        self.context_cfg = cfg.context.clone();
        self.expect_interim = self.expect_interim || expects_interim(cfg);
        self.window.reconfigure(
            self.rules.window_us,
            cfg.window.group_by,
            cfg.window.max_groups,
        );
    }

    /// Tells the detector that interim records will come (replay of open_conn/conn_long files), so that
    /// final records remember their uid as closed from the first record on.
    pub fn expect_interim(&mut self) {
        self.expect_interim = true;
    }

    /// The watermark in seconds since the epoch.
    pub fn watermark(&self) -> Option<f64> {
        self.window.watermark().map(alert::secs)
    }

    pub fn stats(&self) -> DetectorStats {
        let mut s = self.stats.clone();
        s.groups_tracked = self.window.len() as u64;
        s.groups_expired = self.window.expired();
        s.evictions = self.window.evictions();
        s.interim_open = self.interim.open_len() as u64;
        s
    }

    pub fn context_stats(&self) -> ContextStats {
        self.context.stats()
    }

    /// Feeds one record of a context log (ssl, http, dns): it names later connections.
    pub fn process_context(&mut self, r: &crate::zeek::context::ContextRecord) {
        let now = self.window.watermark();
        self.context
            .observe(r, &self.context_cfg, now, self.rules.window_us);
    }

    pub fn snapshot(&self) -> DetectorState {
        DetectorState {
            version: STATE_VERSION,
            window: self.window.state(GroupData::clone),
            stats: self.stats.clone(),
            interim: self.interim.state(),
            context: self.context.state(),
        }
    }

    /// [`Detector::snapshot`] without the window's groups and the context's maps: what `checkpoint.json`
    /// holds when they are saved in the binary group store ([`crate::checkpoint::groups`]).
    pub fn snapshot_header(&self) -> DetectorState {
        DetectorState {
            version: STATE_VERSION,
            window: self.window.state_header(),
            stats: self.stats.clone(),
            interim: self.interim.state_counters(),
            context: self.context.state_counters(),
        }
    }

    /// The context maps, for the checkpoint to save the prevalence entries (all, or those changed).
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The window, for the checkpoint to save its groups (all, or those changed).
    pub fn window(&self) -> &Window<GroupData> {
        &self.window
    }

    /// The interim-record bookkeeping, for the checkpoint to save its uids (all, or those changed).
    pub fn interim(&self) -> &Interim {
        &self.interim
    }

    /// From now on, remember what changes (for an incremental checkpoint).
    pub fn track_changes(&mut self) {
        self.window.track_changes();
        self.context.track_changes();
        self.interim.track_changes();
    }

    /// A checkpoint saved every change so far.
    pub fn clear_changes(&mut self) {
        self.window.clear_changes();
        self.context.clear_changes();
        self.interim.clear_changes();
    }

    /// Rebuilds a detector from [`Detector::snapshot`] and applies `cfg` on top (as a reload would).
    pub fn restore(cfg: &DetectorConfig, state: DetectorState) -> Detector {
        match Detector::restore_with(cfg, state, |_, _, _| Ok::<(), std::convert::Infallible>(())) {
            Ok(d) => d,
            Err(never) => match never {},
        }
    }

    /// [`Detector::restore`], with `groups` putting back what was saved apart from `state` (the window's
    /// groups, the context's maps and the interim uids; before `cfg` is applied, as they were saved under
    /// the old one).
    pub fn restore_with<E>(
        cfg: &DetectorConfig,
        state: DetectorState,
        groups: impl FnOnce(&mut Window<GroupData>, &mut Context, &mut Interim) -> Result<(), E>,
    ) -> Result<Detector, E> {
        let rules = Rules::new(cfg);
        let mut window = Window::from_state(&state.window, cfg.window.max_groups, GroupData::clone);
        let mut context = Context::from_state(&state.context);
        let mut interim = Interim::from_state(&state.interim);
        groups(&mut window, &mut context, &mut interim)?;
        context.finish_restore();
        interim.finish_restore();
        let mut d = Detector {
            rules,
            sensor: cfg.sensor_name.clone(),
            window,
            stats: state.stats,
            interim,
            context,
            context_cfg: cfg.context.clone(),
            expect_interim: expects_interim(cfg),
            last: None,
        };
        d.reconfigure(cfg);
        Ok(d)
    }

    /// The group the last record given to [`Detector::process`] went to, with its figures; None when that
    /// record was not used (no ts or addresses, filtered, an interim repeat).
    pub fn last_figure(&self) -> Option<&GroupFigure> {
        self.last.as_ref()
    }

    /// Feeds one record of a log of `kind`; alerts it raises are appended to `out`.
    /// [`Detector::process`] over `recs` in order, with [`Detector::prefetch`] hints for the records ahead
    /// ([`PREFETCH_AHEAD`]): the same results as one call per record.
    pub fn process_all(&mut self, recs: &[ConnRecord], kind: SourceKind, out: &mut Vec<Alert>) {
        for (i, rec) in recs.iter().enumerate() {
            for (ahead, stage) in PREFETCH_AHEAD {
                if let Some(next) = recs.get(i + ahead) {
                    self.prefetch(next, stage);
                }
            }
            self.process(rec, kind, out);
        }
    }

    /// A hint for a record `process` will take a few records from now (see [`Window::prefetch`] for the
    /// stages and distances): no effect on the detector's state or results. The group is guessed from
    /// the record's addresses (a record the context will name under `group_by = "name"` is guessed
    /// wrong, which only wastes the fetch).
    pub fn prefetch(&self, rec: &ConnRecord, stage: window::Prefetch) {
        if let (Some(orig), Some(resp)) = (rec.orig_h, rec.resp_h) {
            let key = GroupKey::new(
                self.window.group_by(),
                orig,
                resp,
                rec.resp_p.unwrap_or(0),
                transport::number(&rec.proto),
            );
            self.window.prefetch(&key, stage);
            // The two prevalence entries of an outbound record, under the destination's address (a
            // record the context names uses its name: the guess is then wrong, which only wastes it).
            if self.context_cfg.common_destination || self.context_cfg.rare_destination {
                let prevalence = self.context.prevalence();
                match stage {
                    window::Prefetch::Bucket => prevalence.prefetch(&Dest::Addr(resp), orig, false),
                    window::Prefetch::Slot => prevalence.prefetch(&Dest::Addr(resp), orig, true),
                    window::Prefetch::Heap | window::Prefetch::Inner => {}
                }
            }
        }
    }

    pub fn process(&mut self, rec: &ConnRecord, kind: SourceKind, out: &mut Vec<Alert>) {
        self.last = None;
        self.stats.records_seen += 1;
        let Some(ts) = rec.ts.and_then(micros) else {
            self.stats.skipped_no_ts += 1;
            return;
        };
        let dur = rec
            .duration
            .and_then(micros)
            .filter(|d| *d > 0)
            .unwrap_or(0);
        let end = ts.saturating_add(dur);
        self.window.observe(end);
        let (Some(orig), Some(resp)) = (rec.orig_h, rec.resp_h) else {
            self.stats.skipped_no_addr += 1;
            return;
        };
        if let Err(r) = self.rules.filter(orig, resp, rec) {
            match r {
                FilterReason::Never => self.stats.filtered_never += 1,
                FilterReason::Direction => self.stats.filtered_direction += 1,
                FilterReason::State => self.stats.filtered_state += 1,
                FilterReason::Allow => self.stats.filtered_allow += 1,
            }
            return;
        }
        let Some(t) = self.window.watermark() else {
            return;
        };
        self.stats.interim_expired += self.interim.sweep(t, self.rules.interim_timeout_us);

        // Uid rules (see the module doc).
        let is_interim = kind.is_interim();
        let has_uid = !rec.uid.is_empty();
        let prev = if !has_uid {
            None
        } else {
            let remember = self.expect_interim || self.stats.interim_records > 0;
            match self
                .interim
                .admit(&rec.uid, is_interim, end, dur, t, remember)
            {
                Admit::Ignored => {
                    self.stats.interim_ignored += 1;
                    return;
                }
                Admit::Use(prev) => prev,
            }
        };

        let window_us = self.rules.window_us;
        self.context.sweep(t, window_us);
        let named = self
            .context
            .name_for(rec, orig, resp, &self.context_cfg, t, window_us);
        // `[[allow]]` entries with a domain, now that the server name is known (the other filters ran
        // above). An interim uid admitted above stays remembered: its later records get the same name.
        if self.rules.has_domain_allow()
            && self
                .rules
                .allowed_by_name(orig, resp, rec, named.as_ref().map(|n| n.name.as_str()))
        {
            self.stats.filtered_allow += 1;
            return;
        }
        self.stats.records_used += 1;
        if is_interim {
            self.stats.interim_records += 1;
        }
        let prevalence = self.context_cfg.common_destination || self.context_cfg.rare_destination;
        if prevalence
            && matches!(
                self.rules.direction(orig, resp),
                crate::rules::Direction::Outbound | crate::rules::Direction::Internal
            )
        {
            let dest = named
                .as_ref()
                .map_or(Dest::Addr(resp), |n| Dest::Name(n.name.clone()));
            let oldest = t.saturating_sub(window_us);
            self.context
                .reached(orig, dest, end, &self.context_cfg, oldest);
        }
        let (single_th, cum_th) = self.rules.thresholds(orig, resp, rec);
        let group_by = self.window.group_by();
        // By name: the server's name when the context knows it, the pair otherwise.
        let group_name = match (group_by, &named) {
            (GroupBy::Name, Some(n)) => Some(n.name.as_str()),
            _ => None,
        };
        let key = match group_name {
            Some(name) => GroupKey::named(orig, name),
            None => GroupKey::new(
                group_by,
                orig,
                resp,
                rec.resp_p.unwrap_or(0),
                transport::number(&rec.proto),
            ),
        };
        let realert = self.rules.realert_after;
        let measure_kind = self.rules.measure;
        let Some(touched) = self.window.touch(key) else {
            return;
        };
        let (w, cell) = (touched.left_edge, touched.cell);
        let slot = touched.slot;
        if slot.acc.is_empty() && slot.data.connections > 0 {
            slot.data.start_over();
        }
        // A newer record of a connection this group already counts replaces it.
        let replacing = prev
            .as_ref()
            .filter(|p| p.key == key && slot.data.connections > 0);
        let measure_before = match measure_kind {
            Measure::Sum => touched.measure_before,
            Measure::Covered => touched.covered_before,
        };
        slot.data.rules.check_episode_end(&cum_th, measure_before);
        // A new episode's first record is this one (set once the record is in: most often it is then the
        // newest uid at `first_seen`, kept inline).
        let opens = slot.data.rules.episode_first == FirstRecord::None;
        let uid = Uid::new(&rec.uid);
        match replacing {
            Some(p) => {
                slot.acc.replace(w, (p.ts, p.end), (ts, end), cell);
                slot.data.replace(rec, ts, end, dur, p.bytes);
            }
            None => {
                slot.acc.insert(w, ts, end, cell);
                slot.data.add(rec, uid.clone(), ts, end, dur);
            }
        }
        if opens {
            slot.data.set_episode_first(Some((uid, ts)));
        }
        let after = slot.acc.measures(w);
        let sum = after.sum;
        let covered = match measure_kind {
            Measure::Covered => Some(after.covered),
            Measure::Sum => None,
        };
        let measure = covered.unwrap_or(sum);
        if let Some(n) = &named {
            slot.data.add_name(&n.name);
        }
        self.last = Some(GroupFigure {
            key,
            group_by,
            duration_us: dur,
            measure_us: measure,
            single: single_th,
            cumulative: cum_th,
            name: named.as_ref().map(|n| n.name.clone()),
        });
        // Context modifiers, looked up only when the duration or the measure reached a level.
        let dur_level = single_th.level_for(dur);
        let cum_level = cum_th.level_for(measure);
        let reasons: Vec<Reason> = if dur_level.is_some() || cum_level.is_some() {
            self.context.reasons(
                rec,
                orig,
                resp,
                named.as_ref(),
                &self.context_cfg,
                t,
                window_us,
            )
        } else {
            Vec::new()
        };
        let single_level = context::apply(dur_level, &reasons);
        let cum_alert_level = context::apply(cum_level, &reasons);
        let why = alert::Why {
            named: named.as_ref(),
            reasons: &reasons,
        };

        let ctx = alert::Context {
            key: &key,
            resp,
            group_name,
            group_by,
            sensor: &self.sensor,
            t,
            window_us,
            open: is_interim,
            direction: self.rules.direction(orig, resp),
        };
        // A connection alerts again only at a higher level than it already alerted at.
        let conn_level = prev.as_ref().and_then(|p| p.level);
        let mut alerted = conn_level;
        if single_level > conn_level {
            if let Some(level) = slot.data.rules.single(single_level, t, window_us) {
                self.stats.alerts_single[level as usize] += 1;
                alerted = alerted.max(Some(level));
                let reached = dur_level.unwrap_or(level);
                let threshold = single_th.threshold(reached).unwrap_or(0);
                out.push(ctx.single(rec, level, reached, threshold, ts, end, dur, &why));
            }
        }
        if let Some(c) = slot.data.rules.cumulative(cum_alert_level, realert, t) {
            let (level, repeat) = match c {
                CumulativeAlert::Escalation(l) => (l, 0),
                CumulativeAlert::Repeat(l, n) => (l, n),
            };
            self.stats.alerts_cumulative[level as usize] += 1;
            let covered = covered.unwrap_or_else(|| slot.acc.covered(w));
            let first = slot.data.episode_first();
            let first = first.as_ref().map(|(u, ts)| (u.as_str(), *ts));
            let group = slot.data.figures(first, measure, sum, covered);
            let reached = cum_level.unwrap_or(level);
            let threshold = cum_th.threshold(reached).unwrap_or(0);
            out.push(ctx.cumulative(group, level, reached, repeat, threshold, &why));
        }
        if is_interim && has_uid {
            self.interim.keep_open(
                rec.uid.clone(),
                OpenConn {
                    key,
                    ts,
                    end,
                    bytes: rec.total_bytes(),
                    level: alerted,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod fixtures;
