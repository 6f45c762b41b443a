//! Cluster-wide limits (`[[cluster.limits]]`): budgets of integer units
//! that every node spends from, enforced with leases.
//!
//! # Who owns a limit
//!
//! The ring's owner of the limit's name keeps its [`LeaseBook`]; every
//! node, the owner too, spends from a lease of at most `chunk` units it
//! holds ([`LeaseHolder`]), and asks the owner for more when its lease
//! runs out. A spend never waits on the network while the node's lease
//! holds the units. A lease idle for half its life is given back.
//!
//! # Nothing committed is lost when the owner changes
//!
//! - Before an owner answers a grant, it sends its book's figure (units
//!   committed plus leased out: the *reserved* units) to every peer and
//!   waits for `cluster.quorum - 1` of them (one without a quorum) to hold
//!   it; without them in `cluster.ack_timeout` it does not answer (the
//!   lease stays counted, and is forfeited when the holder asks again).
//! - A node that becomes the owner (its ring changed) first asks every
//!   peer for the highest figure it knows; a peer that was granting stops,
//!   unless its own ring still says it owns the limit. The new book starts
//!   with all of that figure committed: the old owner's outstanding leases
//!   count as spent, and their holders, which may spend them until they
//!   expire, stay inside it. Units given back to the old owner after its
//!   last figure are lost to the limit, never the other way round.
//! - An owner that stops owning sends its figure to the new owner, and an
//!   owner that hears of a figure from another owner's book (two owners
//!   for a while: a hung owner that comes back, rings that disagree) makes
//!   its own book again from every peer's figures.
//! - A node without `cluster.quorum` keeps no book and asks for no lease:
//!   cut off from the majority, it spends at most what is left in its
//!   lease, which the majority's owner counts as spent.
//!
//! # The bound
//!
//! A figure is lost only when no peer that answers the new owner holds it
//! (the peers that acknowledged it died too, or did not answer in
//! `cluster.ack_timeout`), or when an owner grants in the moments before it
//! hears that another node owns the limit; and a node alone, without
//! `cluster.quorum`, grants itself leases that nobody else knows of until
//! it meets its peers. In each case what is spent passes `limit` by at most
//! the leases outstanding then. Without a quorum, a partition splits a
//! limit: each side may spend up to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nexus_swarm_runtime::cluster::envelope::{self, FrameKind};
use nexus_swarm_runtime::cluster::{
    Figure, FigureAck, FigureQuery, FigureReply, Grant, HolderPolicy, LeaseBook, LeaseError, LeaseHolder, LeaseOutcome,
    LeasePolicy, LeaseRelease, LeaseReply, LeaseRequest, LimitFigure,
};
use nexus_swarm_runtime::config::ClusterLimitConfig;
use nexus_swarm_runtime::routing::RoutingKey;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::delivery::member_of;
use super::{ClusterHandle, ClusterMsg, ClusterShared};

/// Why a spend against a cluster-wide limit was refused. Nothing was spent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// No `[[cluster.limits]]` entry of that name.
    #[error("no cluster limit named {0:?}")]
    Unknown(String),
    /// More units than one lease may hold: such a spend could never pass.
    #[error("{units} units is more than the {chunk} one lease may hold")]
    TooLarge {
        /// Units asked for.
        units: u64,
        /// The limit's chunk.
        chunk: u64,
    },
    /// The limit is reached.
    #[error("limit {limit} reached: {committed} units committed, {outstanding} leased out")]
    Exhausted {
        /// The limit.
        limit: u64,
        /// Units committed, as the owner counts them.
        committed: u64,
        /// Units in other nodes' leases.
        outstanding: u64,
    },
    /// This node sees fewer members than `cluster.quorum` and its lease
    /// does not hold the units: it may be cut off, so it asks for none.
    #[error("no quorum: {members} member(s) seen, {quorum} needed")]
    NoQuorum {
        /// Members this node sees, itself included.
        members: usize,
        /// The quorum.
        quorum: u32,
    },
    /// No owner granted a lease in time (an owner changing hands, or not
    /// answering).
    #[error("no lease of {limit:?} granted within {waited_ms} ms: {last}")]
    Unavailable {
        /// The limit's name.
        limit: String,
        /// How long the spend waited.
        waited_ms: u64,
        /// The last answer, or `no answer`.
        last: String,
    },
}

/// One limit as this node sees it ([`ClusterHandle::limits`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitStatus {
    /// The limit's name.
    pub name: String,
    /// Units that may be spent in all.
    pub limit: u64,
    /// Most units one lease holds.
    pub chunk: u64,
    /// The window's length in ms, for a limit per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// The ring's owner of the limit, as this node sees it.
    pub owner: Option<String>,
    /// `owner` (this node keeps the book), `collecting` (it is becoming
    /// the owner) or `holder`.
    pub role: &'static str,
    /// The book's figures, on the owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub book: Option<BookStatus>,
    /// The highest reserved figure this node knows (its own book's, or
    /// one replicated to it).
    pub known_reserved: Option<u64>,
    /// Units left in this node's lease (`None`: a spend holds it now).
    pub lease_left: Option<u64>,
    /// Units this node spent.
    pub spent_here: u64,
    /// Spends this node refused.
    pub refused_here: u64,
}

/// An owner's book, as [`LimitStatus`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BookStatus {
    /// The book's epoch.
    pub epoch: u64,
    /// The window it counts (0 for a limit without windows).
    pub window: u64,
    /// Units committed (reported spent, or counted spent).
    pub committed: u64,
    /// Units in leases.
    pub outstanding: u64,
    /// Units left to lease.
    pub available: u64,
}

#[derive(Debug)]
enum Book {
    /// Another node owns the limit.
    None,
    /// This node is becoming the owner: generation of the collection.
    Collecting(u64),
    Ready(LeaseBook),
}

#[derive(Debug)]
struct OwnerSide {
    book: Book,
    /// The highest figure known: by reserved units, with the highest epoch.
    known: Option<LimitFigure>,
    /// The node this one handed the limit over to, if it did.
    handed_to: Option<String>,
    /// Bumped at each collection, so a stale one ends in nothing.
    generation: u64,
    /// The highest epoch known when the current book was made: a figure
    /// of a later epoch, not the book's, comes from another owner.
    floor: u64,
}

impl OwnerSide {
    /// Keeps the highest figure: of the latest window, the most reserved.
    fn learn(&mut self, figure: LimitFigure) {
        let known = self.known.get_or_insert(figure);
        known.epoch = known.epoch.max(figure.epoch);
        if figure.window > known.window {
            known.window = figure.window;
            known.reserved = figure.reserved;
        } else if figure.window == known.window {
            known.reserved = known.reserved.max(figure.reserved);
        }
    }

    /// Stops owning: the book's figure becomes known, and is returned.
    fn hand_over(&mut self, to: Option<String>) -> Option<LimitFigure> {
        if let Book::Ready(book) = &self.book {
            let figure = figure_of(book);
            self.learn(figure);
        }
        self.book = Book::None;
        self.handed_to = to;
        self.known
    }
}

fn figure_of(book: &LeaseBook) -> LimitFigure {
    LimitFigure {
        epoch: book.epoch(),
        window: book.window(),
        reserved: book.reserved(),
    }
}

/// The window `config`'s limit counts now: the Unix time divided by its
/// `window` (0 without one).
fn window_now(config: &ClusterLimitConfig) -> u64 {
    let Some(window) = config.window else {
        return 0;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis() / window.as_millis().max(1)).unwrap_or(u64::MAX)
}

/// One configured limit on this node: its book (when it owns it) and its
/// lease.
#[derive(Debug)]
pub(super) struct LimitSlot {
    config: ClusterLimitConfig,
    chunk: u64,
    owner: Mutex<OwnerSide>,
    /// Held across the round trip to the owner, so one request per limit
    /// is in flight from this node.
    holder: tokio::sync::Mutex<LeaseHolder>,
    spent_here: AtomicU64,
    refused_here: AtomicU64,
}

/// The limits of one node and the replies it waits for.
#[derive(Debug, Default)]
pub(super) struct Limits {
    slots: HashMap<String, Arc<LimitSlot>>,
    /// Lease requests awaiting the owner's reply, by request id.
    lease_waiters: Mutex<HashMap<u64, oneshot::Sender<LeaseOutcome>>>,
    /// Figures awaiting acks, and queries awaiting replies, by id.
    figure_waiters: Mutex<HashMap<u64, mpsc::UnboundedSender<Option<LimitFigure>>>>,
}

impl Limits {
    pub(super) fn new(configs: &[ClusterLimitConfig]) -> Self {
        let slots = configs
            .iter()
            .map(|c| {
                let chunk = c.chunk();
                let slot = LimitSlot {
                    chunk,
                    holder: tokio::sync::Mutex::new(LeaseHolder::new(HolderPolicy {
                        want: chunk,
                        low_water: 0,
                        renew_before: c.lease_ttl / 3,
                        idle_after: c.lease_ttl / 2,
                    })),
                    owner: Mutex::new(OwnerSide {
                        book: Book::None,
                        known: None,
                        handed_to: None,
                        generation: 0,
                        floor: 0,
                    }),
                    config: c.clone(),
                    spent_here: AtomicU64::new(0),
                    refused_here: AtomicU64::new(0),
                };
                (c.name.clone(), Arc::new(slot))
            })
            .collect();
        Self {
            slots,
            ..Self::default()
        }
    }
}

/// An epoch above `floor`, distinct for each node: the low 16 bits are the
/// node's, so two nodes never start books of one epoch.
fn next_epoch(floor: u64, node: &str) -> u64 {
    let tag = xxhash_rust::xxh3::xxh3_64(node.as_bytes()) & 0xffff;
    (((floor >> 16) + 1) << 16) | tag
}

fn limit_key(name: &str) -> RoutingKey {
    RoutingKey::new(format!("nexus.limit.{name}"))
}

fn send_frame<T: Serialize>(shared: &ClusterShared, to: &str, kind: FrameKind, id: u64, msg: &T) {
    match envelope::encode(kind, id, msg, shared.config.compress_above) {
        Ok(bytes) => match member_of(shared, to) {
            // A peer whose session just closed: the caller's timeout covers it.
            Some(member) => {
                let _ = member.cast(ClusterMsg::Frame(bytes));
            }
            None => tracing::debug!(peer = %to, ?kind, "no session to send a limit frame on"),
        },
        Err(e) => tracing::error!(error = %e, ?kind, "limit frame not encoded"),
    }
}

/// The ring changed: take over the limits this node now owns (collecting
/// the peers' figures first), hand over those it no longer owns (sending
/// its figure to the new owner). A node without `cluster.quorum` owns
/// nothing: it may be cut off, and the majority's owner counts its leases.
pub(super) fn ring_changed(shared: &Arc<ClusterShared>) {
    let view = shared.view.load();
    let quorum = shared.check_quorum().is_ok();
    for (name, slot) in &shared.limits.slots {
        let owner = view.ring.owner(limit_key(name)).map(str::to_string);
        let mine = quorum && owner.as_deref() == Some(shared.name.as_str());
        let mut side = slot.owner.lock();
        match (&side.book, mine) {
            (Book::None, true) => start_collecting(shared, slot, &mut side),
            (Book::Ready(_) | Book::Collecting(_), false) => {
                tracing::info!(limit = %name, ?owner, quorum, "handing a cluster limit over");
                let to = owner.filter(|o| quorum && *o != shared.name);
                let figure = side.hand_over(to.clone());
                drop(side);
                if let (Some(to), Some(figure)) = (to, figure) {
                    let msg = Figure {
                        limit: name.clone(),
                        owner: shared.name.clone(),
                        figure,
                    };
                    send_frame(shared, &to, FrameKind::Figure, 0, &msg);
                }
            }
            _ => {}
        }
    }
}

/// The other members of this node's ring.
fn ring_peers(shared: &ClusterShared) -> Vec<String> {
    let view = shared.view.load();
    view.ring
        .members()
        .iter()
        .filter(|m| **m != shared.name)
        .cloned()
        .collect()
}

/// Starts (again) becoming the owner of `slot`: a collection of the
/// peers' figures, then a book.
fn start_collecting(shared: &Arc<ClusterShared>, slot: &Arc<LimitSlot>, side: &mut OwnerSide) {
    side.hand_over(None);
    side.generation += 1;
    let generation = side.generation;
    side.book = Book::Collecting(generation);
    let peers = ring_peers(shared);
    tracing::info!(limit = %slot.config.name, ?peers, "taking over a cluster limit: collecting figures");
    tokio::spawn(collect(Arc::clone(shared), Arc::clone(slot), generation, peers));
}

/// A new owner's collection: the highest figure every peer knows, then a
/// book that starts with it all committed.
async fn collect(shared: Arc<ClusterShared>, slot: Arc<LimitSlot>, generation: u64, peers: Vec<String>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel();
    shared.limits.figure_waiters.lock().insert(id, tx);
    let query = FigureQuery {
        limit: slot.config.name.clone(),
        owner: shared.name.clone(),
    };
    for peer in &peers {
        send_frame(&shared, peer, FrameKind::FigureQuery, id, &query);
    }
    let mut figures = Vec::new();
    let deadline = tokio::time::Instant::now() + shared.config.ack_timeout;
    while figures.len() < peers.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(figure)) => figures.push(figure),
            _ => break,
        }
    }
    shared.limits.figure_waiters.lock().remove(&id);
    let mut side = slot.owner.lock();
    if !matches!(side.book, Book::Collecting(g) if g == generation) {
        return;
    }
    for figure in figures.iter().flatten() {
        side.learn(*figure);
    }
    // A figure of an earlier window: what it committed then no longer
    // counts, its leases may (at most a chunk per member).
    let now = window_now(&slot.config);
    let members = u64::try_from(peers.len() + 1).unwrap_or(u64::MAX);
    let (floor, window, committed) = match side.known {
        Some(f) if f.window >= now => (f.epoch, f.window, f.reserved),
        Some(f) => (f.epoch, now, f.reserved.min(slot.chunk.saturating_mul(members))),
        None => (0, now, 0),
    };
    let policy = LeasePolicy {
        chunk: slot.chunk,
        ttl: slot.config.lease_ttl,
    };
    match LeaseBook::restore(slot.config.limit, policy, committed, next_epoch(floor, &shared.name)) {
        Ok(book) => {
            let book = book.with_window(window);
            tracing::info!(
                limit = %slot.config.name,
                answered = figures.len(),
                asked = peers.len(),
                committed,
                "cluster limit book ready"
            );
            side.learn(figure_of(&book));
            side.floor = floor;
            side.book = Book::Ready(book);
        }
        // The configuration was validated: chunk and ttl are positive.
        Err(e) => tracing::error!(limit = %slot.config.name, error = %e, "cluster limit book not made"),
    }
}

/// Acks (`Some` figure or `None`) needed before an owner answers a grant.
fn acks_needed(shared: &ClusterShared, peers: usize) -> usize {
    let wanted = shared.config.quorum.map_or(1, |q| (q as usize).saturating_sub(1));
    wanted.min(peers)
}

/// The owner's side of a lease request `id` from `req.holder`.
pub(super) fn on_request(shared: &Arc<ClusterShared>, id: u64, req: LeaseRequest) {
    let holder = req.holder.clone();
    let limit = req.limit.clone();
    let reply = move |shared: &ClusterShared, outcome: LeaseOutcome| {
        deliver_reply(shared, &holder, id, &limit, outcome);
    };
    if shared.check_quorum().is_err() {
        return reply(shared, LeaseOutcome::NoQuorum);
    }
    let Some(slot) = shared.limits.slots.get(&req.limit) else {
        return reply(shared, LeaseOutcome::UnknownLimit);
    };
    let mut side = slot.owner.lock();
    let handed_to = side.handed_to.clone();
    let Book::Ready(book) = &mut side.book else {
        let outcome = match side.book {
            Book::Collecting(_) => LeaseOutcome::NotReady,
            _ => LeaseOutcome::NotOwner { owner: handed_to },
        };
        drop(side);
        return reply(shared, outcome);
    };
    let before = figure_of(book);
    book.roll(window_now(&slot.config));
    match book.request(&req.holder, req.held, req.used, req.want, Instant::now()) {
        Err(LeaseError::Exhausted {
            limit,
            committed,
            outstanding,
        }) => {
            drop(side);
            reply(
                shared,
                LeaseOutcome::Exhausted {
                    limit,
                    committed,
                    outstanding,
                },
            );
        }
        Err(e) => {
            tracing::error!(limit = %req.limit, error = %e, "lease request failed");
            drop(side);
            reply(shared, LeaseOutcome::NotReady);
        }
        Ok(grant) => {
            let figure = figure_of(book);
            side.learn(figure);
            drop(side);
            let granted = LeaseOutcome::Granted {
                id: grant.id,
                units: grant.units,
                ttl_ms: u64::try_from(grant.ttl.as_millis()).unwrap_or(u64::MAX),
            };
            let peers = ring_peers(shared);
            let needed = acks_needed(shared, peers.len());
            if (figure.window == before.window && figure.reserved <= before.reserved) || needed == 0 {
                // Nothing more reserved than the peers were told (or no
                // peer to tell): the grant needs no replication.
                return reply(shared, granted);
            }
            let shared = Arc::clone(shared);
            let name = req.limit;
            tokio::spawn(async move {
                let outcome = if replicate(&shared, &name, figure, &peers, needed).await {
                    granted
                } else {
                    tracing::warn!(limit = %name, needed, "grant not replicated in time: not answered");
                    LeaseOutcome::NotReady
                };
                reply(&shared, outcome);
            });
        }
    }
}

/// Sends `figure` to `peers`; true once `needed` of them hold it.
async fn replicate(shared: &ClusterShared, name: &str, figure: LimitFigure, peers: &[String], needed: usize) -> bool {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel();
    shared.limits.figure_waiters.lock().insert(id, tx);
    let msg = Figure {
        limit: name.to_string(),
        owner: shared.name.clone(),
        figure,
    };
    for peer in peers {
        send_frame(shared, peer, FrameKind::Figure, id, &msg);
    }
    let deadline = tokio::time::Instant::now() + shared.config.ack_timeout;
    let mut acks = 0;
    while acks < needed {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(_)) => acks += 1,
            _ => break,
        }
    }
    shared.limits.figure_waiters.lock().remove(&id);
    acks >= needed
}

fn deliver_reply(shared: &ClusterShared, holder: &str, id: u64, limit: &str, outcome: LeaseOutcome) {
    if holder == shared.name {
        on_reply(shared, id, outcome);
    } else {
        let reply = LeaseReply {
            limit: limit.to_string(),
            outcome,
        };
        send_frame(shared, holder, FrameKind::LeaseReply, id, &reply);
    }
}

/// The holder's side: the owner answered request `id`.
pub(super) fn on_reply(shared: &ClusterShared, id: u64, outcome: LeaseOutcome) {
    // A reply after the holder gave up finds nothing: the book then counts
    // that lease as spent when the holder does not present it.
    if let Some(waiter) = shared.limits.lease_waiters.lock().remove(&id) {
        let _ = waiter.send(outcome);
    }
}

/// A lease given back to this node, as owner.
pub(super) fn on_release(shared: &ClusterShared, release: LeaseRelease) {
    let Some(slot) = shared.limits.slots.get(&release.limit) else {
        return;
    };
    let mut side = slot.owner.lock();
    if let Book::Ready(book) = &mut side.book {
        book.release(&release.holder, release.held, release.used, Instant::now());
    }
}

/// An owner's figure: held, and acknowledged. An owner that hears of
/// another owner's book (two owners for a while, during a partition or a
/// change of hands) makes its book again from every peer's figures.
pub(super) fn on_figure(shared: &Arc<ClusterShared>, id: u64, figure: Figure) {
    let Some(slot) = shared.limits.slots.get(&figure.limit) else {
        return;
    };
    {
        let mut side = slot.owner.lock();
        side.learn(figure.figure);
        let foreign = matches!(&side.book, Book::Ready(book)
            if figure.figure.epoch > side.floor && figure.figure.epoch != book.epoch());
        if foreign {
            tracing::warn!(limit = %figure.limit, from = %figure.owner, "another owner's figure: making the book again");
            start_collecting(shared, slot, &mut side);
        }
    }
    let ack = FigureAck {
        node: shared.name.clone(),
    };
    send_frame(shared, &figure.owner, FrameKind::FigureAck, id, &ack);
}

/// A peer holds the figure `id` (or answered the query `id`).
pub(super) fn on_figure_answer(shared: &ClusterShared, id: u64, figure: Option<LimitFigure>) {
    if let Some(waiter) = shared.limits.figure_waiters.lock().get(&id) {
        let _ = waiter.send(figure);
    }
}

/// A new owner asks what this node knows of a limit; it stops granting
/// the limit unless its own ring says it is the owner (then the two
/// disagree for as long as their rings do).
pub(super) fn on_query(shared: &ClusterShared, id: u64, query: FigureQuery) {
    let Some(slot) = shared.limits.slots.get(&query.limit) else {
        return;
    };
    let mine = shared.view.load().ring.owner(limit_key(&query.limit)) == Some(shared.name.as_str());
    let figure = {
        let mut side = slot.owner.lock();
        if mine {
            if let Book::Ready(book) = &side.book {
                let figure = figure_of(book);
                side.learn(figure);
            }
            side.known
        } else {
            if !matches!(side.book, Book::None) {
                tracing::info!(limit = %query.limit, to = %query.owner, "handing a cluster limit over on request");
            }
            side.hand_over(Some(query.owner.clone()))
        }
    };
    let reply = FigureReply {
        limit: query.limit,
        node: shared.name.clone(),
        figure,
    };
    send_frame(shared, &query.owner, FrameKind::FigureReply, id, &reply);
}

/// Each tick: give back leases idle for half their life.
pub(super) fn tick(shared: &Arc<ClusterShared>) {
    let now = Instant::now();
    for slot in shared.limits.slots.values() {
        // A spend holds the lease: it is not idle.
        let Ok(mut holder) = slot.holder.try_lock() else {
            continue;
        };
        if !holder.idle(now) {
            continue;
        }
        let Some((held, used)) = holder.give_back(now) else {
            continue;
        };
        let release = LeaseRelease {
            limit: slot.config.name.clone(),
            holder: shared.name.clone(),
            held,
            used,
        };
        let owner = shared
            .view
            .load()
            .ring
            .owner(limit_key(&slot.config.name))
            .map(str::to_string);
        match owner {
            Some(owner) if owner == shared.name => on_release(shared, release),
            Some(owner) => send_frame(shared, &owner, FrameKind::LeaseRelease, 0, &release),
            None => {}
        }
    }
}

/// Shortest and longest pause between lease requests that got no grant.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(200);

impl ClusterHandle {
    /// Spends `units` of the cluster-wide limit `name`: from this node's
    /// lease, asking the limit's owner for one when it does not hold them
    /// (waiting up to twice `lease_ttl` for an owner to answer). Refused
    /// spends spend nothing.
    pub async fn spend(&self, name: &str, units: u64) -> Result<(), LimitError> {
        let shared = &self.shared;
        let slot = shared
            .limits
            .slots
            .get(name)
            .ok_or_else(|| LimitError::Unknown(name.to_string()))?;
        let result = spend_in(shared, slot, units).await;
        match &result {
            Ok(()) => slot.spent_here.fetch_add(units, Ordering::Relaxed),
            Err(_) => slot.refused_here.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    /// Spends `units` of limit `name` from this node's lease if it holds
    /// them now, without waiting (false otherwise: ask with [`spend`](Self::spend)).
    pub fn try_spend_leased(&self, name: &str, units: u64) -> bool {
        let Some(slot) = self.shared.limits.slots.get(name) else {
            return false;
        };
        let Ok(mut holder) = slot.holder.try_lock() else {
            return false;
        };
        let ok = holder.spend(units, Instant::now()).is_ok();
        if ok {
            slot.spent_here.fetch_add(units, Ordering::Relaxed);
        }
        ok
    }

    /// Puts back `units` of limit `name` spent on this node and not yet
    /// reported to the owner (a hold settled for less than it took); units
    /// already reported stay committed.
    pub fn refund(&self, name: &str, units: u64) {
        let Some(slot) = self.shared.limits.slots.get(name) else {
            return;
        };
        let put_back = move |slot: &LimitSlot, holder: &mut LeaseHolder| {
            let back = holder.refund(units);
            slot.spent_here.fetch_sub(back, Ordering::Relaxed);
        };
        match slot.holder.try_lock() {
            Ok(mut holder) => put_back(slot, &mut holder),
            // A spend holds the lease across a request: put back after it.
            Err(_) => {
                let slot = Arc::clone(slot);
                tokio::spawn(async move {
                    let mut holder = slot.holder.lock().await;
                    put_back(&slot, &mut holder);
                });
            }
        }
    }

    /// Every cluster-wide limit as this node sees it, by name.
    pub fn limits(&self) -> Vec<LimitStatus> {
        let view = self.shared.view.load();
        let mut out: Vec<LimitStatus> = self
            .shared
            .limits
            .slots
            .values()
            .map(|slot| {
                let side = slot.owner.lock();
                let (role, book) = match &side.book {
                    Book::None => ("holder", None),
                    Book::Collecting(_) => ("collecting", None),
                    Book::Ready(b) => (
                        "owner",
                        Some(BookStatus {
                            epoch: b.epoch(),
                            window: b.window(),
                            committed: b.committed(),
                            outstanding: b.outstanding(),
                            available: b.available(),
                        }),
                    ),
                };
                LimitStatus {
                    name: slot.config.name.clone(),
                    limit: slot.config.limit,
                    chunk: slot.chunk,
                    window_ms: slot
                        .config
                        .window
                        .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
                    owner: view.ring.owner(limit_key(&slot.config.name)).map(str::to_string),
                    role,
                    book,
                    known_reserved: side.known.map(|f| f.reserved),
                    lease_left: slot.holder.try_lock().ok().map(|h| h.left(Instant::now())),
                    spent_here: slot.spent_here.load(Ordering::Relaxed),
                    refused_here: slot.refused_here.load(Ordering::Relaxed),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

async fn spend_in(shared: &Arc<ClusterShared>, slot: &LimitSlot, units: u64) -> Result<(), LimitError> {
    if units > slot.chunk {
        return Err(LimitError::TooLarge {
            units,
            chunk: slot.chunk,
        });
    }
    let started = tokio::time::Instant::now();
    let give_up = started + slot.config.lease_ttl.saturating_mul(2);
    let mut pause = RETRY_MIN;
    let mut holder = slot.holder.lock().await;
    let mut hint: Option<String> = None;
    loop {
        let now = Instant::now();
        if holder.spend(units, now).is_ok() {
            return Ok(());
        }
        shared.check_quorum().map_err(|e| match e {
            super::DeliveryError::NoQuorum { members, quorum } => LimitError::NoQuorum { members, quorum },
            other => LimitError::Unavailable {
                limit: slot.config.name.clone(),
                waited_ms: 0,
                last: other.to_string(),
            },
        })?;
        let report = holder.report(now);
        let owner = hint.take().or_else(|| {
            shared
                .view
                .load()
                .ring
                .owner(limit_key(&slot.config.name))
                .map(str::to_string)
        });
        let request = LeaseRequest {
            limit: slot.config.name.clone(),
            holder: shared.name.clone(),
            held: report.held,
            used: report.used,
            want: holder.want().max(units),
        };
        let outcome = match owner {
            Some(owner) => ask_owner(shared, &owner, request).await,
            None => None,
        };
        let last = match outcome {
            Some(LeaseOutcome::Granted { id, units: n, ttl_ms }) => {
                let grant = Grant {
                    id,
                    units: n,
                    ttl: Duration::from_millis(ttl_ms),
                };
                holder.granted(report, grant);
                pause = RETRY_MIN;
                continue;
            }
            Some(LeaseOutcome::Exhausted {
                limit,
                committed,
                outstanding,
            }) => {
                holder.refused(report);
                return Err(LimitError::Exhausted {
                    limit,
                    committed,
                    outstanding,
                });
            }
            Some(LeaseOutcome::NotOwner { owner }) => {
                hint = owner.clone();
                format!("not the owner (hands over to {owner:?})")
            }
            Some(LeaseOutcome::NotReady) => "the owner is not ready".to_string(),
            Some(LeaseOutcome::NoQuorum) => "the owner has no quorum".to_string(),
            Some(LeaseOutcome::UnknownLimit) => "the owner does not know the limit".to_string(),
            None => "no answer".to_string(),
        };
        if tokio::time::Instant::now() + pause >= give_up {
            return Err(LimitError::Unavailable {
                limit: slot.config.name.clone(),
                waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                last,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// Sends `request` to `owner` and waits up to `cluster.ack_timeout` for
/// its answer (`None` without one).
async fn ask_owner(shared: &Arc<ClusterShared>, owner: &str, request: LeaseRequest) -> Option<LeaseOutcome> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    shared.limits.lease_waiters.lock().insert(id, tx);
    if owner == shared.name {
        on_request(shared, id, request);
    } else {
        send_frame(shared, owner, FrameKind::LeaseRequest, id, &request);
    }
    let outcome = tokio::time::timeout(shared.config.ack_timeout, rx).await;
    shared.limits.lease_waiters.lock().remove(&id);
    outcome.ok().and_then(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::next_epoch;

    #[test]
    fn epochs_rise_and_differ_between_nodes() {
        let a = next_epoch(0, "n1");
        let b = next_epoch(0, "n2");
        assert_ne!(a, b);
        assert!(next_epoch(a, "n2") > a);
        assert!(next_epoch(b, "n1") > b);
        assert!(next_epoch(a.max(b), "n1") > a.max(b));
    }
}
