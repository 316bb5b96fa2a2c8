//! A small, careful client for the registry API (OCI distribution spec):
//! `/v2/` checks, the anonymous Bearer token flow, manifests and blobs.
//! It follows redirects itself so that it can cap the hops and never send
//! `Authorization` to a host other than the one that asked for it.

pub mod auth;
pub mod client;
pub mod digest;
pub mod error;
pub mod manifest;
mod token;

pub use client::{ClientOptions, RegistryClient};
pub use error::{ErrorKind, RegistryError};
