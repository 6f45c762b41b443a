//! The response cache: a memory tier (`moka`, weighed by bytes, with a
//! time-to-live) in front of a persistent disk tier (`redb`, compressed
//! with deflate, capped in bytes, surviving restarts).
//!
//! The key is a SHA-256 of the model choice, the normalised conversation
//! (roles and contents with whitespace runs collapsed and ends trimmed) and
//! the parameters that change the answer (`max_tokens`, temperature),
//! each variable-length field prefixed by its length so that two different
//! requests never share an encoding.
//!
//! A lookup tries memory, then disk (a disk hit is promoted to memory).
//! Inserts go to memory at once and to disk through a bounded queue drained
//! by one writer thread that commits in groups and evicts the oldest
//! entries past the byte cap; if the queue is full the disk copy is skipped
//! (and counted), never the request. [`ResponseCache::flush`] waits for the
//! queue to be committed. Disk entries expire after the same TTL, on the
//! wall clock since they outlive the process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use nexus_swarm_runtime::config::CacheConfig;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::CacheError;
use super::types::{LlmRequest, Message, ModelChoice};

/// The version of the key encoding, hashed first.
const KEY_VERSION: &[u8] = b"nexus-cache-v3\0";

/// Hashes one variable-length field: its length (8 bytes, little endian),
/// then its bytes.
fn hash_field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// A cache key: SHA-256 of the normalised request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of a request.
    ///
    /// Every variable-length field is written with its length in front
    /// (and the messages with their count), so no two different requests
    /// share an encoding: `["ab", "c"]` and `["a", "bc"]`, or a content that
    /// contains the separators of another encoding, hash differently.
    pub fn new(model: &ModelChoice, messages: &[Message], max_tokens: u32, temperature_milli: u16) -> Self {
        Self::build(model, messages, max_tokens, temperature_milli, &[])
    }

    /// The key of a whole gateway request: [`CacheKey::new`]'s fields, and
    /// its tools, tool choice and response format (as JSON).
    pub fn of(req: &LlmRequest) -> Self {
        let plain =
            req.tools.is_empty() && req.tool_choice == Default::default() && req.response_format == Default::default();
        let extras = if plain {
            Vec::new()
        } else {
            // Serializing these plain data types cannot fail; an empty
            // encoding would still differ from a plain request's by the
            // fields above only, so fall back to their debug text.
            serde_json::to_vec(&(&req.tools, &req.tool_choice, &req.response_format)).unwrap_or_else(|_| {
                format!("{:?}{:?}{:?}", req.tools, req.tool_choice, req.response_format).into_bytes()
            })
        };
        Self::build(
            &req.model,
            &req.messages,
            req.max_tokens,
            req.temperature_milli,
            &extras,
        )
    }

    fn build(
        model: &ModelChoice,
        messages: &[Message],
        max_tokens: u32,
        temperature_milli: u16,
        extras: &[u8],
    ) -> Self {
        let mut h = Sha256::new();
        // The version names the encoding: a new one never reads entries
        // written under an old one (they age out of the disk tier).
        h.update(KEY_VERSION);
        match model {
            ModelChoice::Named(name) => {
                h.update([0u8]);
                hash_field(&mut h, name.as_bytes());
            }
            ModelChoice::Cheapest(caps) => {
                h.update([1u8]);
                h.update((caps.len() as u64).to_le_bytes());
                for c in caps {
                    hash_field(&mut h, format!("{c:?}").as_bytes());
                }
            }
        }
        h.update((messages.len() as u64).to_le_bytes());
        let mut content = String::new();
        for m in messages {
            hash_field(&mut h, m.role.as_str().as_bytes());
            content.clear();
            for word in m.content.split_whitespace() {
                if !content.is_empty() {
                    content.push(' ');
                }
                content.push_str(word);
            }
            hash_field(&mut h, content.as_bytes());
            hash_field(&mut h, m.tool_call_id.as_deref().unwrap_or_default().as_bytes());
            h.update((m.tool_calls.len() as u64).to_le_bytes());
            for c in &m.tool_calls {
                hash_field(&mut h, c.id.as_bytes());
                hash_field(&mut h, c.name.as_bytes());
                hash_field(&mut h, c.arguments.as_bytes());
            }
        }
        h.update(max_tokens.to_le_bytes());
        h.update(temperature_milli.to_le_bytes());
        hash_field(&mut h, extras);
        CacheKey(h.finalize().into())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResponse {
    /// The completion text.
    pub content: String,
    /// The catalogue model that produced it.
    pub model: String,
}

impl CachedResponse {
    fn weight(&self) -> u32 {
        u32::try_from(self.content.len() + self.model.len() + 64).unwrap_or(u32::MAX)
    }
}

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTier {
    /// Memory.
    Memory,
    /// Disk.
    Disk,
}

/// Hit and miss counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub memory_hits: u64,
    /// Lookups answered from disk.
    pub disk_hits: u64,
    /// Lookups answered by neither.
    pub misses: u64,
    /// Entries written to disk.
    pub disk_writes: u64,
    /// Disk copies skipped (queue full or store error).
    pub disk_skipped: u64,
    /// Entries evicted from disk by the byte cap.
    pub disk_evictions: u64,
    /// Bytes held on disk (payloads and keys).
    pub disk_bytes: u64,
}

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
const ORDER: TableDefinition<u64, &[u8]> = TableDefinition::new("order");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Entry header: format flag (1), sequence (8), expiry in unix ms (8).
const HEADER: usize = 17;

#[derive(Debug, Default)]
struct Counters {
    // Plain counters read by reports; Relaxed: no ordering with other data.
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    disk_writes: AtomicU64,
    disk_skipped: AtomicU64,
    disk_evictions: AtomicU64,
    disk_bytes: AtomicU64,
}

enum DiskOp {
    Put(CacheKey, Vec<u8>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Debug)]
struct DiskTier {
    db: Arc<Database>,
    queue: mpsc::SyncSender<DiskOp>,
    // The writer thread, joined on drop so the file is closed (and can be
    // reopened) once the cache is gone. A Mutex only to take it in `drop`.
    writer: Mutex<Option<JoinHandle<()>>>,
    compression: bool,
}

impl std::fmt::Debug for DiskOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskOp::Put(..) => f.write_str("Put"),
            DiskOp::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// The two-tier response cache.
#[derive(Debug)]
pub struct ResponseCache {
    memory: Option<moka::sync::Cache<CacheKey, Arc<CachedResponse>>>,
    disk: Option<DiskTier>,
    ttl: Duration,
    counters: Arc<Counters>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn store_err(e: impl Into<redb::Error>) -> CacheError {
    CacheError::Store(Box::new(e.into()))
}

impl ResponseCache {
    /// A cache that holds nothing (`cache.enabled = false`).
    pub fn disabled() -> Self {
        Self {
            memory: None,
            disk: None,
            ttl: Duration::ZERO,
            counters: Arc::default(),
        }
    }

    /// Opens the cache; the disk tier lives in `dir` (created if needed)
    /// unless `dir` is `None` or `cache.disk_bytes` is 0.
    pub fn open(config: &CacheConfig, dir: Option<&Path>) -> Result<Self, CacheError> {
        if !config.enabled {
            return Ok(Self::disabled());
        }
        let memory = moka::sync::Cache::builder()
            .max_capacity(config.memory_bytes)
            .weigher(|_k: &CacheKey, v: &Arc<CachedResponse>| v.weight())
            .time_to_live(config.ttl)
            .build();
        let counters = Arc::new(Counters::default());
        let disk = match dir {
            Some(dir) if config.disk_bytes > 0 => Some(DiskTier::open(
                dir,
                config.disk_bytes,
                config.compression,
                Arc::clone(&counters),
            )?),
            _ => None,
        };
        Ok(Self {
            memory: Some(memory),
            disk,
            ttl: config.ttl,
            counters,
        })
    }

    /// Whether anything is cached at all.
    pub fn is_enabled(&self) -> bool {
        self.memory.is_some()
    }

    /// Looks a key up in memory, then on disk.
    pub fn get(&self, key: &CacheKey) -> Option<(Arc<CachedResponse>, CacheTier)> {
        let memory = self.memory.as_ref()?;
        if let Some(v) = memory.get(key) {
            self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Some((v, CacheTier::Memory));
        }
        if let Some(v) = self.disk.as_ref().and_then(|d| d.get(key)) {
            let v = Arc::new(v);
            memory.insert(*key, Arc::clone(&v));
            self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
            return Some((v, CacheTier::Disk));
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Stores an answer in memory and queues it for disk.
    pub fn insert(&self, key: CacheKey, value: CachedResponse) {
        let Some(memory) = &self.memory else { return };
        if let Some(disk) = &self.disk {
            let expires = now_unix_ms().saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
            match disk.encode(&value, expires) {
                Some(bytes) => {
                    if disk.queue.try_send(DiskOp::Put(key, bytes)).is_err() {
                        self.counters.disk_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    self.counters.disk_skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        memory.insert(key, Arc::new(value));
    }

    /// Resolves once every insert queued so far is committed to disk.
    pub async fn flush(&self) {
        let Some(disk) = &self.disk else { return };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A blocking send: flushes are rare and the queue drains quickly.
        let queue = disk.queue.clone();
        let sent = tokio::task::spawn_blocking(move || queue.send(DiskOp::Flush(tx)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            // The writer drops the sender only if it stops: nothing to wait for then.
            let _ = rx.await;
        }
    }

    /// Drops every memory entry (the disk tier is kept), as after a restart.
    pub fn clear_memory(&self) {
        self.shrink_memory();
    }

    /// Drops every memory entry (the disk tier is kept) and answers the
    /// bytes they weighed.
    pub fn shrink_memory(&self) -> u64 {
        let Some(m) = &self.memory else { return 0 };
        m.run_pending_tasks();
        let before = m.weighted_size();
        m.invalidate_all();
        m.run_pending_tasks();
        before.saturating_sub(m.weighted_size())
    }

    /// Hit, miss and disk counts.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            disk_writes: c.disk_writes.load(Ordering::Relaxed),
            disk_skipped: c.disk_skipped.load(Ordering::Relaxed),
            disk_evictions: c.disk_evictions.load(Ordering::Relaxed),
            disk_bytes: c.disk_bytes.load(Ordering::Relaxed),
        }
    }
}

impl DiskTier {
    fn open(dir: &Path, cap: u64, compression: bool, counters: Arc<Counters>) -> Result<Self, CacheError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path: PathBuf = dir.join("llm-cache.redb");
        let db = Arc::new(Database::create(&path).map_err(store_err)?);
        {
            let tx = db.begin_write().map_err(store_err)?;
            {
                tx.open_table(ENTRIES).map_err(store_err)?;
                tx.open_table(ORDER).map_err(store_err)?;
                let meta = tx.open_table(META).map_err(store_err)?;
                let bytes = meta.get("bytes").map_err(store_err)?.map_or(0, |v| v.value());
                counters.disk_bytes.store(bytes, Ordering::Relaxed);
            }
            tx.commit().map_err(store_err)?;
        }
        let (queue, rx) = mpsc::sync_channel(1024);
        let writer_db = Arc::clone(&db);
        let writer = std::thread::Builder::new()
            .name("llm-cache-writer".into())
            .spawn(move || writer_loop(&writer_db, &rx, cap, &counters))
            .map_err(|e| CacheError::Io {
                path: path.clone(),
                source: e,
            })?;
        Ok(Self {
            db,
            queue,
            writer: Mutex::new(Some(writer)),
            compression,
        })
    }

    fn encode(&self, value: &CachedResponse, expires: u64) -> Option<Vec<u8>> {
        let json = serde_json::to_vec(value).ok()?;
        let mut out = Vec::with_capacity(HEADER + json.len());
        out.push(u8::from(self.compression));
        out.extend_from_slice(&[0; 8]); // sequence, set by the writer
        out.extend_from_slice(&expires.to_le_bytes());
        if self.compression {
            let mut enc = DeflateEncoder::new(out, Compression::fast());
            std::io::Write::write_all(&mut enc, &json).ok()?;
            enc.finish().ok()
        } else {
            out.extend_from_slice(&json);
            Some(out)
        }
    }

    fn get(&self, key: &CacheKey) -> Option<CachedResponse> {
        let tx = self.db.begin_read().ok()?;
        let table = tx.open_table(ENTRIES).ok()?;
        let guard = table.get(&key.as_bytes()[..]).ok()??;
        let raw = guard.value();
        if raw.len() < HEADER {
            return None;
        }
        let expires = u64::from_le_bytes(raw[9..17].try_into().ok()?);
        if expires <= now_unix_ms() {
            return None;
        }
        let body = &raw[HEADER..];
        let json = if raw[0] == 1 {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut DeflateDecoder::new(body), &mut out).ok()?;
            out
        } else {
            body.to_vec()
        };
        serde_json::from_slice(&json).ok()
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has drained; joining it
        // releases the database file.
        let (dead, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.queue, dead));
        if let Some(w) = self.writer.lock().take() {
            let _ = w.join(); // a panicked writer has nothing left to release
        }
    }
}

fn writer_loop(db: &Database, rx: &mpsc::Receiver<DiskOp>, cap: u64, counters: &Counters) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < 256 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        let mut puts = Vec::new();
        for op in ops {
            match op {
                DiskOp::Put(k, v) => puts.push((k, v)),
                DiskOp::Flush(tx) => flushes.push(tx),
            }
        }
        if !puts.is_empty() {
            let n = puts.len() as u64;
            match write_batch(db, puts, cap, counters) {
                Ok(()) => {
                    counters.disk_writes.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.disk_skipped.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(error = %e, "llm cache disk write failed");
                }
            }
        }
        for f in flushes {
            let _ = f.send(()); // the flusher may have given up waiting
        }
    }
}

fn write_batch(db: &Database, puts: Vec<(CacheKey, Vec<u8>)>, cap: u64, counters: &Counters) -> Result<(), CacheError> {
    let tx = db.begin_write().map_err(store_err)?;
    {
        let mut entries = tx.open_table(ENTRIES).map_err(store_err)?;
        let mut order = tx.open_table(ORDER).map_err(store_err)?;
        let mut meta = tx.open_table(META).map_err(store_err)?;
        let mut bytes = meta.get("bytes").map_err(store_err)?.map_or(0, |v| v.value());
        let mut seq = meta.get("seq").map_err(store_err)?.map_or(0, |v| v.value());
        for (key, mut value) in puts {
            let k = &key.as_bytes()[..];
            if let Some(old) = entries.remove(k).map_err(store_err)? {
                let old = old.value();
                bytes = bytes.saturating_sub(old.len() as u64 + 32);
                if old.len() >= HEADER {
                    let old_seq = u64::from_le_bytes(old[1..9].try_into().unwrap_or([0; 8]));
                    order.remove(old_seq).map_err(store_err)?;
                }
            }
            seq += 1;
            value[1..9].copy_from_slice(&seq.to_le_bytes());
            bytes += value.len() as u64 + 32;
            entries.insert(k, value.as_slice()).map_err(store_err)?;
            order.insert(seq, k).map_err(store_err)?;
        }
        // Evict the oldest entries past the cap.
        while bytes > cap {
            let Some((s, k)) = order
                .first()
                .map_err(store_err)?
                .map(|(s, k)| (s.value(), k.value().to_vec()))
            else {
                break;
            };
            order.remove(s).map_err(store_err)?;
            if let Some(old) = entries.remove(k.as_slice()).map_err(store_err)? {
                bytes = bytes.saturating_sub(old.value().len() as u64 + 32);
            }
            counters.disk_evictions.fetch_add(1, Ordering::Relaxed);
        }
        meta.insert("bytes", bytes).map_err(store_err)?;
        meta.insert("seq", seq).map_err(store_err)?;
        counters.disk_bytes.store(bytes, Ordering::Relaxed);
    }
    tx.commit().map_err(store_err)?;
    Ok(())
}

#[cfg(test)]
mod tests;
