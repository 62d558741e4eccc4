//! Per-tenant publish rate: a GCRA limiter (the `governor` crate) keyed by tenant,
//! in items per second with a burst. Past it a write is RESOURCE_EXHAUSTED and
//! says when to retry (`retry-after-ms` metadata, and `grpc-retry-pushback-ms`,
//! which gRPC's retry policy honours).

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::limits::Limits;

pub(crate) struct TenantRate {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl TenantRate {
    pub(crate) fn new(limits: &Limits) -> Self {
        let limiter = NonZeroU32::new(limits.tenant_items_per_second).map(|rate| {
            let burst = NonZeroU32::new(limits.tenant_burst_items.max(rate.get())).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        TenantRate {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Takes `items` from `tenant`'s allowance, or says how long to wait.
    pub(crate) fn admit(&self, tenant: &str, items: u32) -> Result<(), ApiError> {
        let (Some(l), Some(n)) = (&self.limiter, NonZeroU32::new(items)) else {
            return Ok(());
        };
        match l.check_key_n(&tenant.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::RateLimited {
                    retry_after_ms: (wait.as_millis() as u64).max(1),
                })
            }
            // More items than the burst: never admissible as one request.
            Err(_) => Err(ApiError::InvalidArgument(format!(
                "{items} items exceed the tenant burst (limits.tenant_burst_items)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_with_a_delay() {
        let limits = Limits {
            tenant_items_per_second: 10,
            tenant_burst_items: 20,
            ..Limits::default()
        };
        let r = TenantRate::new(&limits);
        r.admit("a", 20).unwrap();
        match r.admit("a", 5) {
            Err(ApiError::RateLimited { retry_after_ms }) => assert!(retry_after_ms >= 1),
            other => panic!("expected RateLimited, got {other:?}"),
        }
        // Another tenant has its own allowance.
        r.admit("b", 20).unwrap();
        assert!(matches!(
            r.admit("c", 21),
            Err(ApiError::InvalidArgument(_))
        ));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let limits = Limits {
            tenant_items_per_second: 0,
            ..Limits::default()
        };
        let r = TenantRate::new(&limits);
        for _ in 0..100 {
            r.admit("a", 1000).unwrap();
        }
    }
}
