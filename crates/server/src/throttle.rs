//! Per-principal limits: requests in flight and request rate.
//!
//! Each principal may have at most `max_in_flight` requests running at once, and its
//! requests refill a token bucket of `burst` tokens at `per_second` tokens a second.
//! A request over either limit gets 429 with `Retry-After`. Only authenticated
//! principals are counted, so the maps hold at most one entry per identity the client
//! CA or the token file vouches for, and idle entries are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use api::error::{ApiError, ErrorKind};

/// The limits of one principal.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    /// Requests of one principal running at once. Default 256.
    pub max_in_flight: usize,
    /// Requests per second one principal may sustain. Default 10,000.
    pub per_second: f64,
    /// Requests one principal may send at once above the sustained rate. Default 20,000.
    pub burst: f64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            max_in_flight: 256,
            per_second: 10_000.0,
            burst: 20_000.0,
        }
    }
}

struct Usage {
    in_flight: usize,
    tokens: f64,
    refilled: Instant,
}

/// The per-principal counters.
pub struct Throttle {
    settings: ThrottleSettings,
    usage: Arc<Mutex<HashMap<String, Usage>>>,
}

/// A running request; dropping it frees its place.
pub(crate) struct InFlight {
    usage: Arc<Mutex<HashMap<String, Usage>>>,
    principal: String,
    per_second: f64,
    burst: f64,
}

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Throttle {
        Throttle {
            settings,
            usage: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Admits a request of `principal`, or returns the 429 to send.
    pub(crate) fn admit(&self, principal: &str) -> Result<InFlight, ApiError> {
        let now = Instant::now();
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = usage.entry(principal.to_string()).or_insert(Usage {
            in_flight: 0,
            tokens: self.settings.burst,
            refilled: now,
        });
        let elapsed = now.duration_since(entry.refilled).as_secs_f64();
        entry.tokens = (entry.tokens + elapsed * self.settings.per_second).min(self.settings.burst);
        entry.refilled = now;
        if entry.in_flight >= self.settings.max_in_flight {
            return Err(ApiError::new(
                ErrorKind::TooManyRequests,
                format!(
                    "Too many requests: principal [{principal}] already has {} requests running, the limit",
                    self.settings.max_in_flight
                ),
            ));
        }
        if entry.tokens < 1.0 {
            return Err(ApiError::new(
                ErrorKind::TooManyRequests,
                format!(
                    "Too many requests: principal [{principal}] is over its limit of {} requests per second",
                    self.settings.per_second
                ),
            ));
        }
        entry.tokens -= 1.0;
        entry.in_flight += 1;
        Ok(InFlight {
            usage: Arc::clone(&self.usage),
            principal: principal.to_string(),
            per_second: self.settings.per_second,
            burst: self.settings.burst,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = usage.get_mut(&self.principal) else {
            return;
        };
        entry.in_flight = entry.in_flight.saturating_sub(1);
        // Forget the principal once nothing of it runs and its bucket has refilled,
        // since a fresh entry starts the same way.
        let refilled = entry.tokens + entry.refilled.elapsed().as_secs_f64() * self.per_second;
        if entry.in_flight == 0 && refilled >= self.burst {
            usage.remove(&self.principal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_cap_per_principal() {
        let throttle = Throttle::new(ThrottleSettings {
            max_in_flight: 2,
            ..ThrottleSettings::default()
        });
        let first = throttle.admit("a").unwrap();
        let _second = throttle.admit("a").unwrap();
        assert_eq!(throttle.admit("a").err().unwrap().status(), 429);
        assert!(
            throttle.admit("b").is_ok(),
            "other principals are not affected"
        );
        drop(first);
        assert!(throttle.admit("a").is_ok());
    }

    #[test]
    fn rate_limit_refuses_after_the_burst() {
        let throttle = Throttle::new(ThrottleSettings {
            max_in_flight: 100,
            per_second: 0.001,
            burst: 3.0,
        });
        for _ in 0..3 {
            drop(throttle.admit("a").unwrap());
        }
        let refused = throttle.admit("a").err().unwrap();
        assert_eq!(refused.status(), 429);
        assert!(refused.to_json().contains("requests per second"));
    }
}
