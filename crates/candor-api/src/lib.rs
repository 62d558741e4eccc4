//! # candor-api: the Candor gRPC front door
//!
//! [`KtService`] implements `candor.v1.KeyTransparency`
//! (`proto/candor/v1/candor.proto`, whose comments are the contract: one
//! documented status per bad input, nothing applied on error).
//!
//! * **Writes** (`Publish`, `PublishBatch`) need `authorization: Bearer
//!   <token>`; the server stores only [`hash_token`] of each tenant's token
//!   and compares in constant time. The API validates every item against
//!   [`Limits`] *before* anything is sent on, computes the label's VRF index
//!   (it holds the VRF secret; once per label, see [`label_vrf`]), and hands the batch to a [`Publisher`] (the
//!   shard layer), which answers once each mutation is durable with a signed
//!   SMT.
//! * **Reads** are public and always at a *signed* epoch: the head comes
//!   from the [`candor_tree::EpochLogStore`], the map from a
//!   [`candor_tree::MapView`] of that epoch's shard revisions (checked
//!   against the head's map root), and the proofs from the view. Lookups of
//!   absent labels carry a VRF proof too.
//! * **Errors** are one [`ApiError`]; `impl From<ApiError> for Status` is the
//!   only mapping to gRPC codes. Internal errors are logged, not returned.
//! * **Telemetry**: every RPC runs in a `rpc` span with a request id (the
//!   caller's `x-request-id` or a fresh one, echoed back), the tenant, the
//!   epoch and the first 4 bytes of the VRF index. Labels are never logged.
//!
//! [`serve`] runs the service with `grpc.health.v1` (SERVING once the first
//! epoch is signed) and reflection, until a shutdown signal.
//!
//! [`ApiProxy`] is the stateless API role (`candor serve --role api`): the
//! same service, answered by forwarding each call to a member that holds
//! replicas ([`serve_proxy`]).

mod auth;
mod error;
mod guard;
pub mod label_vrf;
mod limits;
mod proxy;
mod publisher;
mod rate;
mod server;
mod service;

#[cfg(feature = "test-util")]
pub mod testing;

pub use auth::{Authenticator, Tenant, generate_token, hash_token};
pub use error::{ApiError, Result};
pub use guard::{GuardStats, effective_max_connections};
pub use limits::Limits;
pub use proxy::{ApiProxy, ProxyOptions, serve_proxy, serve_proxy_tls};
pub use publisher::{CosignatureLog, PublishError, PublishReceipt, PublishRequest, Publisher};
pub use server::{serve, serve_tls};
pub use service::{ApiOptions, Backend, Currency, KtService};
