//! Fixtures that run real Redis processes for the integration tests.
//!
//! Use it from a test file with `mod support;` and reach the helpers through
//! `support::redis`, `support::cache` (caches on a test's Redis),
//! `support::child` (the test binary run again as a child process) and
//! `support::wait` (bounded polling). Nothing here mocks Redis: every helper
//! starts or talks to a real `redis-server` on 127.0.0.1.

#![allow(dead_code, reason = "each test binary uses a different part")]

#[cfg(feature = "redis")]
pub mod cache;
pub mod child;
pub mod proxy;
pub mod redis;
pub mod wait;
