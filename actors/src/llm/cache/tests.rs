use super::*;

fn cfg() -> CacheConfig {
    CacheConfig::default()
}

fn key(text: &str) -> CacheKey {
    CacheKey::new(&ModelChoice::Named("m".into()), &[Message::user(text)], 64, 0)
}

fn resp(text: &str) -> CachedResponse {
    CachedResponse {
        content: text.into(),
        model: "m".into(),
    }
}

#[test]
fn key_normalises_whitespace_but_not_words_or_parameters() {
    let m = ModelChoice::Named("m".into());
    let a = CacheKey::new(&m, &[Message::user("  hello   world\n")], 64, 0);
    let b = CacheKey::new(&m, &[Message::user("hello world")], 64, 0);
    assert_eq!(a, b);
    assert_ne!(a, CacheKey::new(&m, &[Message::user("hello worlds")], 64, 0));
    assert_ne!(a, CacheKey::new(&m, &[Message::system("hello world")], 64, 0));
    assert_ne!(a, CacheKey::new(&m, &[Message::user("hello world")], 65, 0));
    assert_ne!(a, CacheKey::new(&m, &[Message::user("hello world")], 64, 700));
    assert_ne!(
        a,
        CacheKey::new(&ModelChoice::Named("n".into()), &[Message::user("hello world")], 64, 0)
    );
    // Message boundaries matter: two messages are not their concatenation.
    assert_ne!(
        CacheKey::new(&m, &[Message::user("a"), Message::user("b")], 64, 0),
        CacheKey::new(&m, &[Message::user("a b")], 64, 0)
    );
}

#[test]
fn keys_of_different_requests_never_collide_through_their_separators() {
    let m = ModelChoice::Named("m".into());
    let key = |model: &ModelChoice, texts: &[&str]| {
        let messages: Vec<Message> = texts.iter().map(|t| Message::user(*t)).collect();
        CacheKey::new(model, &messages, 64, 0)
    };
    // Field boundaries move, the concatenated bytes stay the same.
    assert_ne!(key(&m, &["ab", "c"]), key(&m, &["a", "bc"]));
    // A content holding what a separator-based encoding puts between
    // messages is still one message.
    assert_ne!(key(&m, &["a\0user\0b"]), key(&m, &["a", "b"]));
    // The model name and the conversation are separate fields too.
    assert_ne!(
        key(&ModelChoice::Named("m\0user\0x".into()), &["y"]),
        key(&m, &["x\0user\0y"])
    );
    assert_ne!(key(&m, &[]), key(&m, &[""]));
}

#[test]
fn memory_then_disk_across_reopen_with_hit_and_miss_counts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = ResponseCache::open(&cfg(), Some(dir.path())).unwrap();
        assert!(c.get(&key("q")).is_none());
        c.insert(key("q"), resp("answer"));
        let (v, tier) = c.get(&key("q")).unwrap();
        assert_eq!((v.content.as_str(), tier), ("answer", CacheTier::Memory));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(c.flush());
        let s = c.stats();
        assert_eq!((s.memory_hits, s.misses, s.disk_writes), (1, 1, 1));
    }
    let c = ResponseCache::open(&cfg(), Some(dir.path())).unwrap();
    let (v, tier) = c.get(&key("q")).unwrap();
    assert_eq!((v.content.as_str(), tier), ("answer", CacheTier::Disk));
    // Promoted to memory.
    assert_eq!(c.get(&key("q")).unwrap().1, CacheTier::Memory);
    assert_eq!((c.stats().disk_hits, c.stats().memory_hits), (1, 1));
}

#[test]
fn disk_tier_stays_under_its_byte_cap_by_evicting_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cfg();
    config.disk_bytes = 4_000;
    config.compression = false;
    let c = ResponseCache::open(&config, Some(dir.path())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for i in 0..40 {
        c.insert(key(&format!("q{i}")), resp(&"x".repeat(300)));
        rt.block_on(c.flush());
    }
    let s = c.stats();
    assert!(s.disk_bytes <= 4_000, "{s:?}");
    assert!(s.disk_evictions > 0);
    c.clear_memory();
    assert!(c.get(&key("q0")).is_none(), "oldest evicted");
    assert_eq!(c.get(&key("q39")).unwrap().1, CacheTier::Disk);
}

#[test]
fn compressed_entries_are_smaller_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = ResponseCache::open(&cfg(), Some(dir.path())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = "the same words again and again ".repeat(100);
    c.insert(key("big"), resp(&text));
    rt.block_on(c.flush());
    assert!(c.stats().disk_bytes < text.len() as u64 / 4, "{:?}", c.stats());
    c.clear_memory();
    assert_eq!(c.get(&key("big")).unwrap().0.content, text);
}

#[test]
fn disabled_cache_holds_nothing() {
    let mut config = cfg();
    config.enabled = false;
    let c = ResponseCache::open(&config, None).unwrap();
    c.insert(key("q"), resp("a"));
    assert!(c.get(&key("q")).is_none());
    assert!(!c.is_enabled());
}
