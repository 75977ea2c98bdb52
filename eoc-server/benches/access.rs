//! What the access gate costs per command: the cached token check every
//! request makes (store change check, SHA-256, map lookup), the rule book
//! and the rate limit, against the argon2id verification the cache saves
//! (the peer: checking the stored hash on every request).
//!
//! `cargo bench -p eoc-server --bench access`

#![allow(clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eoc_server::access::RateLimits;
use eoc_server::auth::store::{NewUser, UserStore, verify_token};
use eoc_server::auth::verifier::Verifier;
use eoc_server::auth::{Principal, Role};
use eoc_server::config::AccessConfig;

fn tokens(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut store = UserStore::open(dir.path()).expect("the user store");
    let user = NewUser {
        name: "r-1".to_owned(),
        role: Role::Responder,
        team: Some("t-1".to_owned()),
        sites: vec![],
    };
    let token = store.add(&user).expect("a user");
    let hash = store.get("r-1").expect("read").expect("the user").token_hash;
    let verifier = Verifier::open(dir.path()).expect("the verifier");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(verifier.bearer(&token)).expect("the token verifies");

    let mut g = c.benchmark_group("access/token");
    g.bench_function("eoc/cached bearer check", |b| {
        b.iter(|| rt.block_on(verifier.bearer(black_box(&token))).expect("valid"));
    });
    g.sample_size(10);
    g.bench_function("peer/argon2id verify", |b| b.iter(|| assert!(verify_token(black_box(&token), &hash))));
    g.finish();

    let limits = RateLimits::new(&AccessConfig { responder_per_s: 1e9, ..AccessConfig::default() });
    let who = Principal::responder("r-1", "t-1");
    c.bench_function("access/rate limit check", |b| {
        b.iter(|| limits.check(black_box(&who), Instant::now()).expect("within the rate"));
    });
}

criterion_group!(benches, tokens);
criterion_main!(benches);
