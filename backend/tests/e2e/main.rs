//! End-to-end tests through a real Pushpin: one integration binary, one module per flow.

#[path = "../emulators/mod.rs"]
mod emulators;
mod support;

mod aws;
mod bad_input;
mod changes;
mod fanout;
mod fetcher_failures;
mod keys;
mod lifecycle;
mod politeness;
mod restart;
mod smoke;
