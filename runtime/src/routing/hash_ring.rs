//! [`HashRing`]: consistent hashing with virtual nodes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::{MAX_RING_POINTS, RoutingError, RoutingKey, RoutingStrategy};

/// Most bits of the hash used to index the ring's buckets (a 2^20-entry
/// table of `u32`, 4 MiB, for rings of a million points and more).
const MAX_INDEX_BITS: u32 = 20;

/// One virtual node: a point on the ring and the member that owns it
/// (16 bytes, so four points share a cache line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RingPoint {
    hash: u64,
    member: u32,
}

/// A consistent-hash ring: every member owns `virtual_nodes` points at
/// `xxh3_64_with_seed(name, i)` for `i` in `0..virtual_nodes`, and a key
/// belongs to the owner of the first point at or after the key's hash
/// (wrapping around).
///
/// Points depend only on the members' names, so:
/// * a key maps to the same member while membership is unchanged, on every
///   node and in every process that builds the ring from the same names;
/// * adding a member moves only the keys that now fall on its points (about
///   `1/(N+1)` of them), and only onto it;
/// * removing a member (or leaving an unhealthy one out) moves only its own
///   keys, each to the next member along the ring, and they come back when
///   it returns.
///
/// The ring is a sorted `Vec` of points searched by binary search. A table
/// indexed by the top bits of the hash narrows the search to the points of
/// one bucket first (about one point per bucket), so a lookup costs a table
/// read and one or two comparisons even with 160,000 points.
///
/// Without a key, picks go round-robin over the members.
#[derive(Debug)]
pub struct HashRing {
    points: Vec<RingPoint>,
    /// `index[b]` is the first point whose hash has top bits `>= b`;
    /// `index[1 << bits] == points.len()`.
    index: Vec<u32>,
    /// Right shift that turns a hash into its bucket.
    shift: u32,
    members: usize,
    virtual_nodes: u32,
    /// Round-robin cursor for keyless picks. Relaxed: orders nothing.
    cursor: AtomicUsize,
}

impl HashRing {
    /// A ring over members with these (distinct) names, `virtual_nodes`
    /// points each. Member `i` of the ring is `names[i]`.
    pub fn new<S: AsRef<str>>(names: &[S], virtual_nodes: u32) -> Result<Self, RoutingError> {
        Self::check(names, virtual_nodes)?;
        // Checked: at most MAX_RING_POINTS.
        let total = names.len() * virtual_nodes as usize;
        // (point, owner's name hash, member): points that collide are
        // ordered by the owner's name hash, so ownership does not depend on
        // the order the members are given in.
        let mut sorted: Vec<(u64, u64, u32)> = Vec::with_capacity(total);
        for (member, name) in names.iter().enumerate() {
            let bytes = name.as_ref().as_bytes();
            let owner_id = xxh3_64(bytes);
            for v in 0..virtual_nodes {
                sorted.push((xxh3_64_with_seed(bytes, u64::from(v)), owner_id, member as u32));
            }
        }
        sorted.sort_unstable();
        let points: Vec<RingPoint> = sorted
            .into_iter()
            .map(|(hash, _, member)| RingPoint { hash, member })
            .collect();

        // About one point per bucket: bits = ceil(log2(points)), within 1..=20.
        let bits = (usize::BITS - total.max(2).saturating_sub(1).leading_zeros()).clamp(1, MAX_INDEX_BITS);
        let shift = 64 - bits;
        let buckets = 1usize << bits;
        let mut index = Vec::with_capacity(buckets + 1);
        let mut p = 0usize;
        for b in 0..buckets {
            while p < points.len() && ((points[p].hash >> shift) as usize) < b {
                p += 1;
            }
            index.push(p as u32);
        }
        index.push(points.len() as u32);

        Ok(Self {
            points,
            index,
            shift,
            members: names.len(),
            virtual_nodes,
            cursor: AtomicUsize::new(0),
        })
    }

    /// The member a key belongs to, or `None` for an empty ring.
    #[inline]
    pub fn lookup(&self, key: &RoutingKey) -> Option<usize> {
        self.lookup_hash(key.hash())
    }

    /// The member owning the first point at or after `hash`.
    #[inline]
    pub fn lookup_hash(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let bucket = (hash >> self.shift) as usize;
        let lo = self.index[bucket] as usize;
        let hi = self.index[bucket + 1] as usize;
        // Points of later buckets all hash higher, so if none in this bucket
        // is at or after `hash`, the answer is the first point after it.
        let at = lo + self.points[lo..hi].partition_point(|p| p.hash < hash);
        let point = self.points.get(at).unwrap_or(&self.points[0]);
        Some(point.member as usize)
    }

    /// The distinct members met walking the ring clockwise from `hash`:
    /// first the owner ([`lookup_hash`](Self::lookup_hash)), then each next
    /// member along the ring, each once. Consistent hashing with bounded
    /// loads walks this until it finds a member with room.
    pub fn successors(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let len = self.points.len();
        let start = if len == 0 {
            0
        } else {
            let bucket = (hash >> self.shift) as usize;
            let lo = self.index[bucket] as usize;
            let hi = self.index[bucket + 1] as usize;
            (lo + self.points[lo..hi].partition_point(|p| p.hash < hash)) % len
        };
        let mut seen = vec![false; self.members];
        (0..len).filter_map(move |i| {
            let member = self.points[(start + i) % len].member as usize;
            if seen[member] {
                None
            } else {
                seen[member] = true;
                Some(member)
            }
        })
    }

    /// Points on the ring (members x virtual nodes).
    pub fn points(&self) -> usize {
        self.points.len()
    }

    /// Virtual nodes per member.
    pub fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }

    /// Whether [`new`](Self::new) accepts these members, without building
    /// the ring: at least one virtual node, at most [`MAX_RING_POINTS`]
    /// points, distinct names.
    pub fn check<S: AsRef<str>>(names: &[S], virtual_nodes: u32) -> Result<(), RoutingError> {
        if virtual_nodes == 0 {
            return Err(RoutingError::ZeroVirtualNodes);
        }
        let total = names.len().saturating_mul(virtual_nodes as usize);
        if total > MAX_RING_POINTS || names.len() > u32::MAX as usize {
            return Err(RoutingError::RingTooLarge {
                members: names.len(),
                virtual_nodes,
                max: MAX_RING_POINTS,
            });
        }
        let mut seen = HashSet::with_capacity(names.len());
        for name in names {
            if !seen.insert(name.as_ref()) {
                return Err(RoutingError::DuplicateName(name.as_ref().to_string()));
            }
        }
        Ok(())
    }
}

impl RoutingStrategy for HashRing {
    #[inline]
    fn pick(&self, key: Option<&RoutingKey>) -> Option<usize> {
        match key {
            Some(key) => self.lookup(key),
            None if self.members == 0 => None,
            None => Some(self.cursor.fetch_add(1, Ordering::Relaxed) % self.members),
        }
    }

    fn len(&self) -> usize {
        self.members
    }
}
