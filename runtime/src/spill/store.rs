//! [`SpillStore`]: a durable FIFO of byte records in a directory.
//!
//! # Files
//!
//! * `LOCK`: held with an exclusive `flock` while a store is open (on
//!   Unix), so two stores (in one process or two) never share a directory.
//!   The kernel drops the lock when its process dies, killed or not.
//! * `<first seq, 20 digits>.seg`: segments of records, appended in
//!   sequence order. A new segment is started once the current one holds
//!   [`SpillStore::segment_bytes`]; a segment whose records are all
//!   acknowledged is deleted.
//! * `ACKED`: the acknowledgement watermark (every record with a smaller
//!   sequence number was acknowledged), in two 16-byte slots written in
//!   turn (the value and its xxh3), so a torn write damages at most the
//!   slot being written and the other still holds the previous watermark.
//!
//! A record is a 20-byte header (payload length `u32`, sequence `u64`,
//! xxh3 of the sequence and the payload `u64`, little-endian) and the
//! payload. Opening a store verifies every record still to be delivered;
//! reading one verifies it again. A record whose checksum, sequence or
//! length does not hold is reported as [`SpillError::Corrupt`] naming the
//! file and offset, and is never returned. The one exception is an
//! incomplete last record of the last segment: a write cut short by a
//! crash, whose append never returned, so nobody was told it was stored. It
//! is cut off (and logged).
//!
//! Acknowledgements may come out of order (a pool's workers handle
//! concurrently): the watermark advances over the contiguous prefix, and a
//! restart delivers again every record at or above it.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};

use std::path::{Path, PathBuf};

use super::SpillError;

/// Bytes of a record header: payload length, sequence, checksum.
pub const RECORD_HEADER: u64 = 20;

/// Largest payload of one record: 64 MiB.
pub const MAX_RECORD: u32 = 64 << 20;

/// Largest segment the store starts new records in: 64 MiB.
const MAX_SEGMENT: u64 = 64 << 20;

/// Smallest segment: 4 KiB.
const MIN_SEGMENT: u64 = 4 << 10;

const SEGMENT_EXT: &str = "seg";
const ACKED: &str = "ACKED";
const LOCK: &str = "LOCK";

fn checksum(seq: u64, payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.digest()
}

fn io(path: &Path, source: std::io::Error) -> SpillError {
    SpillError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// Sequence of its first record.
    first: u64,
    /// Sequence after its last record.
    end: u64,
    /// File length.
    bytes: u64,
    path: PathBuf,
}

/// Where the next [`SpillStore::take`] reads.
#[derive(Debug)]
struct Cursor {
    /// The segment read (segments are named by their first sequence).
    segment_first: u64,
    /// Offset of the next record in it.
    offset: u64,
    /// Sequence of the next record in it.
    next: u64,
    reader: BufReader<File>,
}

/// A durable FIFO of byte records under one directory (see the module docs
/// for the files). Synchronous: the caller serializes access.
///
/// ```
/// use nexus_swarm_runtime::spill::SpillStore;
///
/// let dir = std::env::temp_dir().join(format!("spill-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let mut store = SpillStore::open(&dir, 1 << 20, false)?;
/// store.append(b"first")?;
/// store.append(b"second")?;
/// let (seq, bytes) = store.take()?.expect("a record");
/// assert_eq!(bytes, b"first");
/// store.ack(seq)?;
/// drop(store);
///
/// // Reopened, only the unacknowledged record is left.
/// let mut store = SpillStore::open(&dir, 1 << 20, false)?;
/// assert_eq!(store.take()?.map(|(_, b)| b), Some(b"second".to_vec()));
/// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), nexus_swarm_runtime::spill::SpillError>(())
/// ```
#[derive(Debug)]
pub struct SpillStore {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    sync: bool,
    /// Held for the lock it carries.
    _lock: File,
    segments: VecDeque<Segment>,
    /// Append handle on the last segment, opened on the first append.
    writer: Option<File>,
    cursor: Option<Cursor>,
    /// Sequence the next append gets.
    next_seq: u64,
    /// Sequence the next take returns.
    next_take: u64,
    /// Every sequence below it is acknowledged.
    acked: u64,
    /// Acknowledged sequences above `acked`.
    acked_above: BTreeSet<u64>,
    acked_file: File,
    /// Watermark writes so far (picks the slot of the next one).
    acked_writes: u64,
    /// Set once a record read back was damaged: nothing more is taken.
    damaged: bool,
}

impl SpillStore {
    /// Opens (creating if needed) the store in `dir`, holding at most
    /// `max_bytes` of segment files; `sync` makes every append and
    /// acknowledgement wait for the disk (`fsync`), not only for the
    /// operating system. Verifies every record not yet acknowledged.
    pub fn open(dir: impl AsRef<Path>, max_bytes: u64, sync: bool) -> Result<Self, SpillError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        lock_exclusive(&lock, &lock_path, &dir)?;
        let acked_path = dir.join(ACKED);
        let mut acked_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&acked_path)
            .map_err(|e| io(&acked_path, e))?;
        let (acked, newest_slot) = read_watermark(&mut acked_file, &acked_path)?;

        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
                continue;
            }
            let first = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| SpillError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    reason: "segment name is not a sequence number".into(),
                })?;
            firsts.push(first);
        }
        firsts.sort_unstable();

        let mut segments = VecDeque::new();
        let mut expected: Option<u64> = None;
        let count = firsts.len();
        for (i, first) in firsts.into_iter().enumerate() {
            let path = dir.join(segment_name(first));
            if let Some(want) = expected
                && want != first
            {
                return Err(SpillError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("segment starts at sequence {first}, expected {want}"),
                });
            }
            let end = scan_segment(&path, first, acked, i + 1 == count)?;
            let bytes = std::fs::metadata(&path).map_err(|e| io(&path, e))?.len();
            expected = Some(end);
            if end <= acked {
                // Every record acknowledged: the deletion was cut short.
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
                continue;
            }
            segments.push_back(Segment {
                first,
                end,
                bytes,
                path,
            });
        }
        let next_seq = expected.unwrap_or(acked).max(acked);
        let next_take = segments.front().map_or(next_seq, |s| s.first).max(acked);
        let segment_bytes = (max_bytes / 4).clamp(MIN_SEGMENT, MAX_SEGMENT);
        Ok(Self {
            dir,
            max_bytes,
            segment_bytes,
            sync,
            _lock: lock,
            segments,
            writer: None,
            cursor: None,
            next_seq,
            next_take,
            acked,
            acked_above: BTreeSet::new(),
            acked_file,
            // The next write goes to the other slot than the newest.
            acked_writes: newest_slot + 1,
            damaged: false,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Size at which a new segment is started: a quarter of the store's
    /// bytes, between 4 KiB and 64 MiB.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Records appended and not yet taken.
    pub fn untaken(&self) -> u64 {
        if self.damaged {
            0
        } else {
            self.next_seq - self.next_take
        }
    }

    /// Records not yet acknowledged (taken or not): what a restart would
    /// deliver.
    pub fn unacked(&self) -> u64 {
        self.next_seq - self.acked - self.acked_above.len() as u64
    }

    /// Bytes of segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Whether a damaged record was read (nothing more is taken).
    pub fn is_damaged(&self) -> bool {
        self.damaged
    }

    /// Appends a record; returns its sequence. Refused with
    /// [`SpillError::Full`] when the files would exceed the store's bytes,
    /// and [`SpillError::TooLarge`] for a payload above [`MAX_RECORD`].
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, SpillError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or(SpillError::TooLarge {
                bytes: payload.len() as u64,
                max: MAX_RECORD.into(),
            })?;
        let size = RECORD_HEADER + u64::from(len);
        if self.disk_bytes() + size > self.max_bytes {
            return Err(SpillError::Full {
                max_bytes: self.max_bytes,
            });
        }
        let rotate = self
            .segments
            .back()
            .is_none_or(|s| s.bytes > 0 && s.bytes + size > self.segment_bytes);
        if rotate || self.writer.is_none() {
            let (path, fresh) = if rotate {
                (self.dir.join(segment_name(self.next_seq)), true)
            } else {
                // Reopened store: append to its last segment.
                let last = self.segments.back().map(|s| s.path.clone());
                (
                    last.unwrap_or_else(|| self.dir.join(segment_name(self.next_seq))),
                    false,
                )
            };
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            if fresh {
                if self.sync {
                    sync_dir(&self.dir)?;
                }
                self.segments.push_back(Segment {
                    first: self.next_seq,
                    end: self.next_seq,
                    bytes: 0,
                    path,
                });
            }
            self.writer = Some(file);
        }
        let seq = self.next_seq;
        let mut record = Vec::with_capacity(size as usize);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&checksum(seq, payload).to_le_bytes());
        record.extend_from_slice(payload);
        let (Some(writer), Some(segment)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(io(&self.dir, std::io::Error::other("no segment open for appending")));
        };
        let written = writer
            .write_all(&record)
            .and_then(|()| if self.sync { writer.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Cut off whatever part was written so the file stays whole; if
            // even that fails, the next open cuts off the incomplete record.
            let _ = writer.set_len(segment.bytes);
            return Err(io(&segment.path, e));
        }
        segment.bytes += size;
        segment.end = seq + 1;
        self.next_seq = seq + 1;
        Ok(seq)
    }

    /// Takes the oldest record not yet taken, verified: its sequence and
    /// payload. It stays stored until [`Self::ack`].
    pub fn take(&mut self) -> Result<Option<(u64, Vec<u8>)>, SpillError> {
        if self.damaged || self.next_take >= self.next_seq {
            return Ok(None);
        }
        let seq = self.next_take;
        let result = self.read_at_cursor(seq);
        match result {
            Ok(payload) => {
                self.next_take = seq + 1;
                Ok(Some((seq, payload)))
            }
            Err(e) => {
                self.damaged = true;
                Err(e)
            }
        }
    }

    fn read_at_cursor(&mut self, seq: u64) -> Result<Vec<u8>, SpillError> {
        let Some(segment) = self.segments.iter().find(|s| s.first <= seq && seq < s.end) else {
            return Err(SpillError::Corrupt {
                path: self.dir.clone(),
                offset: 0,
                reason: format!("no segment holds sequence {seq}"),
            });
        };
        let path = segment.path.clone();
        if self.cursor.as_ref().is_none_or(|c| c.segment_first != segment.first) {
            let file = File::open(&path).map_err(|e| io(&path, e))?;
            let mut cursor = Cursor {
                segment_first: segment.first,
                offset: 0,
                next: segment.first,
                reader: BufReader::new(file),
            };
            // Skip the records before `seq` (acknowledged ones, after a reopen).
            while cursor.next < seq {
                cursor.read(&path, false)?;
            }
            self.cursor = Some(cursor);
        }
        match self.cursor.as_mut() {
            Some(cursor) => cursor.read(&path, true),
            None => Err(io(&path, std::io::Error::other("no cursor open for reading"))),
        }
    }

    /// Acknowledges a taken record: it is not delivered again, even after a
    /// restart. Segments wholly acknowledged are deleted. Returns whether
    /// bytes were freed.
    pub fn ack(&mut self, seq: u64) -> Result<bool, SpillError> {
        if seq < self.acked || seq >= self.next_take {
            return Ok(false);
        }
        if seq != self.acked {
            self.acked_above.insert(seq);
            return Ok(false);
        }
        self.acked += 1;
        while self.acked_above.remove(&self.acked) {
            self.acked += 1;
        }
        self.write_watermark()?;
        let mut freed = false;
        while self.segments.front().is_some_and(|s| s.end <= self.acked) {
            let Some(segment) = self.segments.pop_front() else {
                break;
            };
            if self.cursor.as_ref().is_some_and(|c| c.segment_first == segment.first) {
                self.cursor = None;
            }
            if self.segments.is_empty() {
                self.writer = None;
            }
            std::fs::remove_file(&segment.path).map_err(|e| io(&segment.path, e))?;
            freed = true;
        }
        Ok(freed)
    }

    fn write_watermark(&mut self) -> Result<(), SpillError> {
        let path = self.dir.join(ACKED);
        let slot = self.acked_writes % 2;
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.acked.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..8]);
        bytes[8..].copy_from_slice(&sum.to_le_bytes());
        self.acked_file
            .seek(SeekFrom::Start(slot * 16))
            .and_then(|_| self.acked_file.write_all(&bytes))
            .and_then(|()| if self.sync { self.acked_file.sync_data() } else { Ok(()) })
            .map_err(|e| io(&path, e))?;
        self.acked_writes += 1;
        Ok(())
    }
}

/// Takes the directory's lock (`flock`, dropped by the kernel with the
/// file or its process), or says who has it.
#[cfg(unix)]
fn lock_exclusive(file: &File, path: &Path, dir: &Path) -> Result<(), SpillError> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(SpillError::Locked { dir: dir.to_path_buf() }),
        Err(e) => Err(io(path, e.into())),
    }
}

/// Without `flock`, the directory is not locked: one pool per directory
/// is then the caller's to keep.
#[cfg(not(unix))]
fn lock_exclusive(_file: &File, _path: &Path, _dir: &Path) -> Result<(), SpillError> {
    Ok(())
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.{SEGMENT_EXT}")
}

fn sync_dir(dir: &Path) -> Result<(), SpillError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))
}

/// Reads the watermark: the larger of the two valid slots, and its slot;
/// 0 for a new file. Both slots damaged is [`SpillError::Corrupt`].
fn read_watermark(file: &mut File, path: &Path) -> Result<(u64, u64), SpillError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| io(path, e))?;
    if bytes.is_empty() {
        return Ok((0, 1));
    }
    let slot = |i: usize| -> Option<u64> {
        let s = bytes.get(i * 16..i * 16 + 16)?;
        let value: [u8; 8] = s[..8].try_into().ok()?;
        let sum: [u8; 8] = s[8..].try_into().ok()?;
        (xxhash_rust::xxh3::xxh3_64(&value) == u64::from_le_bytes(sum)).then_some(u64::from_le_bytes(value))
    };
    match (slot(0), slot(1)) {
        (None, None) => Err(SpillError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: "no acknowledgement slot has a valid checksum".into(),
        }),
        (a, b) if b > a => Ok((b.unwrap_or(0), 1)),
        (a, _) => Ok((a.unwrap_or(0), 0)),
    }
}

/// How reading one record ended.
enum Framed {
    /// A whole record whose checks held: its payload.
    Record(Vec<u8>),
    /// The file ends where a record would start.
    End,
    /// The file ends inside a record.
    Torn,
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads the record at `offset`, which must hold sequence `want`; checks
/// its payload's checksum when `verify_sum`.
fn read_record(
    reader: &mut impl Read,
    path: &Path,
    offset: u64,
    want: u64,
    verify_sum: bool,
) -> Result<Framed, SpillError> {
    let corrupt = |reason: String| SpillError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut head = [0; RECORD_HEADER as usize];
    match read_full(reader, &mut head).map_err(|e| io(path, e))? {
        0 => return Ok(Framed::End),
        n if n < head.len() => return Ok(Framed::Torn),
        _ => {}
    }
    let field = |at: usize| -> [u8; 8] {
        let mut b = [0; 8];
        b.copy_from_slice(&head[at..at + 8]);
        b
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let seq = u64::from_le_bytes(field(4));
    let sum = u64::from_le_bytes(field(12));
    if len > MAX_RECORD {
        return Err(corrupt(format!(
            "record length {len} is above the maximum {MAX_RECORD}"
        )));
    }
    let mut payload = vec![0; len as usize];
    if read_full(reader, &mut payload).map_err(|e| io(path, e))? < payload.len() {
        return Ok(Framed::Torn);
    }
    if seq != want {
        return Err(corrupt(format!("record holds sequence {seq}, expected {want}")));
    }
    if verify_sum && checksum(seq, &payload) != sum {
        return Err(corrupt(format!("checksum mismatch in record {seq}")));
    }
    Ok(Framed::Record(payload))
}

impl Cursor {
    /// Reads the next record, which must be there.
    fn read(&mut self, path: &Path, verify_sum: bool) -> Result<Vec<u8>, SpillError> {
        match read_record(&mut self.reader, path, self.offset, self.next, verify_sum)? {
            Framed::Record(payload) => {
                self.offset += RECORD_HEADER + payload.len() as u64;
                self.next += 1;
                Ok(payload)
            }
            Framed::End | Framed::Torn => Err(SpillError::Corrupt {
                path: path.to_path_buf(),
                offset: self.offset,
                reason: format!("file ends before record {}", self.next),
            }),
        }
    }
}

/// Verifies a segment's records (checksums only from `acked` on: earlier
/// records are never delivered again) and returns the sequence after its
/// last. An incomplete record at the end of the last segment is cut off.
fn scan_segment(path: &Path, first: u64, acked: u64, last: bool) -> Result<u64, SpillError> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut offset = 0;
    let mut seq = first;
    loop {
        match read_record(&mut reader, path, offset, seq, seq >= acked)? {
            Framed::Record(payload) => {
                offset += RECORD_HEADER + payload.len() as u64;
                seq += 1;
            }
            Framed::End => return Ok(seq),
            Framed::Torn if last => {
                tracing::warn!(path = %path.display(), offset, "cutting off an incomplete last record");
                let file = OpenOptions::new().write(true).open(path).map_err(|e| io(path, e))?;
                file.set_len(offset).map_err(|e| io(path, e))?;
                return Ok(seq);
            }
            Framed::Torn => {
                return Err(SpillError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    reason: "incomplete record inside a segment that is not the last".into(),
                });
            }
        }
    }
}
