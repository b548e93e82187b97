//! An OpenAI-compatible gateway that protects its upstream providers with the `resilience` library,
//! and the fault-injecting mock provider that its tests and demo run against.

#![forbid(unsafe_code)]
#![deny(unused_must_use)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all
)]

pub mod mock;
