//! Admission limits: per-tenant rate limits (records/s and bytes/s, token buckets with bursts)
//! and the per-source-address throttle on failed authentications.
//!
//! A request is admitted whole or not at all: every tenant it carries is checked first, and only
//! then are tokens taken. A request larger than a bucket is admitted when the bucket is full and
//! leaves it in debt, so the long-run rate still holds and no request is refused for ever.
//! Bucket state outlives reloads; a changed limit applies from the next request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use audit_store::TenantId;

use crate::config::TenantLimits;

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    fn configure(&mut self, rate: f64, burst: f64) {
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// `None` if `cost` may be taken now, else how long until it may.
    fn wait(&self, cost: f64) -> Option<Duration> {
        let needed = cost.min(self.burst);
        if self.tokens >= needed {
            None
        } else {
            Some(Duration::from_secs_f64((needed - self.tokens) / self.rate))
        }
    }
}

/// A tenant's demand in one request.
#[derive(Debug, Clone)]
pub struct Demand<'a> {
    pub tenant: &'a TenantId,
    pub limits: &'a TenantLimits,
    pub records: u64,
    pub bytes: u64,
}

/// A refused admission: which tenant and limit, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    pub tenant: TenantId,
    pub limit: &'static str,
    pub retry_after: Duration,
}

#[derive(Default)]
struct TenantBuckets {
    records: Option<Bucket>,
    bytes: Option<Bucket>,
}

/// Every tenant's rate-limit buckets.
#[derive(Default)]
pub struct Quotas {
    buckets: Mutex<HashMap<TenantId, TenantBuckets>>,
}

impl Quotas {
    /// Admits all of `demands` or none of them.
    pub fn admit(&self, demands: &[Demand<'_>], now: Instant) -> Result<(), RateLimited> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for d in demands {
            let b = map.entry(d.tenant.clone()).or_default();
            sync(
                &mut b.records,
                d.limits.records_per_second,
                d.limits.records_burst,
                now,
            );
            sync(
                &mut b.bytes,
                d.limits.bytes_per_second,
                d.limits.bytes_burst,
                now,
            );
            let checks = [
                (&b.records, d.records, "records_per_second"),
                (&b.bytes, d.bytes, "bytes_per_second"),
            ];
            for (bucket, cost, limit) in checks {
                if let Some(wait) = bucket.as_ref().and_then(|b| b.wait(cost as f64)) {
                    return Err(RateLimited {
                        tenant: d.tenant.clone(),
                        limit,
                        retry_after: wait,
                    });
                }
            }
        }
        for d in demands {
            if let Some(b) = map.get_mut(d.tenant) {
                if let Some(bucket) = &mut b.records {
                    bucket.tokens -= d.records as f64;
                }
                if let Some(bucket) = &mut b.bytes {
                    bucket.tokens -= d.bytes as f64;
                }
            }
        }
        Ok(())
    }
}

impl Quotas {
    /// Whether `tenant` is so far over a limit that no request with a record in it can be
    /// admitted now (less than one record's or one byte's token left): decided from the tenant
    /// alone, before a request's body is read. Takes nothing.
    pub fn exhausted(
        &self,
        tenant: &TenantId,
        limits: &TenantLimits,
        now: Instant,
    ) -> Option<RateLimited> {
        if limits.records_per_second.is_none() && limits.bytes_per_second.is_none() {
            return None;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.get_mut(tenant)?;
        sync(
            &mut b.records,
            limits.records_per_second,
            limits.records_burst,
            now,
        );
        sync(
            &mut b.bytes,
            limits.bytes_per_second,
            limits.bytes_burst,
            now,
        );
        let checks = [
            (&b.records, "records_per_second"),
            (&b.bytes, "bytes_per_second"),
        ];
        checks.into_iter().find_map(|(bucket, limit)| {
            let wait = bucket.as_ref()?.wait(1.0)?;
            Some(RateLimited {
                tenant: tenant.clone(),
                limit,
                retry_after: wait,
            })
        })
    }
}

fn sync(slot: &mut Option<Bucket>, rate: Option<u64>, burst: Option<u64>, now: Instant) {
    match rate {
        None => *slot = None,
        Some(rate) => {
            let rate = rate as f64;
            let burst = burst.map_or(rate, |b| b as f64);
            match slot {
                Some(b) => {
                    b.refill(now);
                    b.configure(rate, burst);
                }
                None => *slot = Some(Bucket::new(rate, burst, now)),
            }
        }
    }
}

/// At most this many source addresses are tracked; beyond it, recovered ones are forgotten.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// Failed authentications per source address: `per_minute` allowed, then refused until the
/// bucket refills. Only failures take tokens.
pub struct AuthThrottle {
    per_minute: Mutex<u32>,
    sources: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AuthThrottle {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: Mutex::new(per_minute),
            sources: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_per_minute(&self, per_minute: u32) {
        *self.per_minute.lock().unwrap_or_else(|p| p.into_inner()) = per_minute;
    }

    /// `Some(wait)` when `source` has used up its failures.
    pub fn check(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = map.get_mut(&source)?;
        bucket.refill(now);
        bucket.wait(1.0)
    }

    /// Records a failure; returns true for the first one after the source was in good standing
    /// (so the caller logs once per burst, not once per attempt).
    pub fn failed(&self, source: IpAddr, now: Instant) -> bool {
        let per_minute = f64::from(*self.per_minute.lock().unwrap_or_else(|p| p.into_inner()));
        let mut map = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED_SOURCES && !map.contains_key(&source) {
            map.retain(|_, b| {
                b.refill(now);
                b.tokens < b.burst
            });
        }
        let bucket = map
            .entry(source)
            .or_insert_with(|| Bucket::new(per_minute / 60.0, per_minute, now));
        bucket.refill(now);
        bucket.configure(per_minute / 60.0, per_minute);
        let first = bucket.tokens >= bucket.burst;
        bucket.tokens -= 1.0;
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(records: Option<u64>, burst: Option<u64>) -> TenantLimits {
        TenantLimits {
            records_per_second: records,
            records_burst: burst,
            bytes_per_second: None,
            bytes_burst: None,
            max_attributes_per_record: 128,
        }
    }

    #[test]
    fn a_tenant_is_exhausted_only_without_a_records_worth_of_tokens() {
        let quotas = Quotas::default();
        let a = TenantId::parse("a").unwrap();
        let l = limits(Some(10), Some(10));
        let t0 = Instant::now();
        assert_eq!(quotas.exhausted(&a, &l, t0), None, "no bucket yet");
        let demand = |records| Demand {
            tenant: &a,
            limits: &l,
            records,
            bytes: 0,
        };
        quotas.admit(&[demand(9)], t0).unwrap();
        assert_eq!(quotas.exhausted(&a, &l, t0), None, "one record left");
        assert_eq!(
            quotas.exhausted(&a, &l, t0),
            None,
            "and checking takes nothing"
        );
        quotas.admit(&[demand(1)], t0).unwrap();
        let limited = quotas.exhausted(&a, &l, t0).unwrap();
        assert_eq!(limited.limit, "records_per_second");
        assert_eq!(limited.retry_after, Duration::from_millis(100));
        assert_eq!(
            quotas.exhausted(&a, &l, t0 + Duration::from_millis(100)),
            None
        );
        assert_eq!(
            quotas.exhausted(&a, &limits(None, None), t0),
            None,
            "no limit"
        );
    }

    #[test]
    fn token_bucket_admits_the_rate_and_no_more() {
        let quotas = Quotas::default();
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let la = limits(Some(100), Some(200));
        let lb = limits(None, None);
        let t0 = Instant::now();
        let d = |t, l, n| Demand {
            tenant: t,
            limits: l,
            records: n,
            bytes: 0,
        };
        // The burst is available at once.
        assert!(quotas.admit(&[d(&a, &la, 150)], t0).is_ok());
        assert!(quotas.admit(&[d(&a, &la, 50)], t0).is_ok());
        let refused = quotas.admit(&[d(&a, &la, 10)], t0).unwrap_err();
        assert_eq!(refused.limit, "records_per_second");
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        // A request with an over-limit tenant is refused whole: b's tokens are not taken either
        // (b is unlimited, so this shows only that the refusal names a).
        assert_eq!(
            quotas
                .admit(&[d(&b, &lb, 1_000_000), d(&a, &la, 1)], t0)
                .unwrap_err()
                .tenant,
            a
        );
        // After 0.1 s, 10 records fit again.
        let t1 = t0 + Duration::from_millis(100);
        assert!(quotas.admit(&[d(&a, &la, 10)], t1).is_ok());
        // A request larger than the burst goes through from a full bucket, leaving debt.
        let t2 = t1 + Duration::from_secs(10);
        assert!(quotas.admit(&[d(&a, &la, 1000)], t2).is_ok());
        assert!(
            quotas
                .admit(&[d(&a, &la, 1)], t2 + Duration::from_secs(1))
                .is_err()
        );
        assert!(
            quotas
                .admit(&[d(&a, &la, 1)], t2 + Duration::from_secs(11))
                .is_ok()
        );
    }

    #[test]
    fn bytes_are_limited_like_records() {
        let quotas = Quotas::default();
        let a = TenantId::parse("a").unwrap();
        let byte_limits = TenantLimits {
            bytes_per_second: Some(1000),
            bytes_burst: Some(4000),
            ..limits(None, None)
        };
        let t0 = Instant::now();
        let d = |bytes| Demand {
            tenant: &a,
            limits: &byte_limits,
            records: 1_000_000,
            bytes,
        };
        assert!(quotas.admit(&[d(3000)], t0).is_ok());
        assert!(quotas.admit(&[d(1000)], t0).is_ok());
        let refused = quotas.admit(&[d(500)], t0).unwrap_err();
        assert_eq!(refused.limit, "bytes_per_second");
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert!(
            quotas
                .admit(&[d(500)], t0 + Duration::from_millis(500))
                .is_ok()
        );
        // Unlimited again after a reload: no bucket, nothing refused.
        let unlimited = limits(None, None);
        let d = Demand {
            tenant: &a,
            limits: &unlimited,
            records: 1,
            bytes: 1 << 30,
        };
        assert!(quotas.admit(&[d], t0).is_ok());
    }

    #[test]
    fn failed_authentications_are_throttled_per_source() {
        let throttle = AuthThrottle::new(3);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(throttle.check(x, t0).is_none());
        assert!(throttle.failed(x, t0));
        assert!(!throttle.failed(x, t0));
        assert!(!throttle.failed(x, t0));
        assert!(throttle.check(x, t0).is_some());
        assert!(throttle.check(y, t0).is_none());
        assert!(throttle.check(x, t0 + Duration::from_secs(20)).is_none());
    }
}
