//! The process-wide budget of pinned (page-locked) host memory that offloaded tables on the
//! CUDA backend may copy their rows into.
//!
//! Pinned memory cannot be swapped or reclaimed, so pinning every offloaded table of every
//! model could starve the rest of the machine. Each [`super::MappedHostTable`] reserves its
//! bytes here first; a refused table is served by the generic offloaded table instead (rows
//! read from the host tier, pooled on the host, uploaded) — see "Offloaded tables" in
//! `docs/CUDA.md`. This module is plain bookkeeping with no CUDA call, tested on the CPU.

use parking_lot::Mutex;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// The environment variable that sets the process-wide budget: bytes (`8589934592`), a size
/// with a binary unit (`512MiB`, `8GiB`) or a share of host RAM (`50%`).
pub const PINNED_BUDGET_VAR: &str = "COHOST_PINNED_BUDGET";

/// Used when host RAM cannot be read: 8 GiB.
const UNKNOWN_RAM_BUDGET: u64 = 8 << 30;

/// A pinned-memory budget: a limit and the bytes reserved against it.
#[derive(Debug)]
pub struct PinnedBudget {
    /// `(limit, used)` in bytes.
    state: Mutex<(u64, u64)>,
}

/// A reservation of pinned bytes, returned to its budget when dropped.
#[derive(Debug)]
pub struct PinnedReservation {
    budget: Arc<PinnedBudget>,
    bytes: u64,
}

/// Why a reservation was refused (what asked, and the budget's state then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedRefusal {
    /// What asked (a table name).
    pub what: String,
    /// Bytes asked for.
    pub bytes: u64,
    /// The budget's limit.
    pub limit: u64,
    /// Bytes already reserved.
    pub used: u64,
}

impl fmt::Display for PinnedRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} of pinned host memory refused: the pinned budget is {} and {} is already \
             reserved (raise it with {PINNED_BUDGET_VAR}, e.g. 50% or 16GiB)",
            self.what,
            mib(self.bytes),
            mib(self.limit),
            mib(self.used)
        )
    }
}

/// `bytes` as MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl PinnedBudget {
    /// A budget of `limit` bytes with nothing reserved.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(PinnedBudget {
            state: Mutex::new((limit, 0)),
        })
    }

    /// Reserves `bytes` for `what`, or refuses when they would take the total past the limit.
    pub fn reserve(
        self: &Arc<Self>,
        bytes: u64,
        what: &str,
    ) -> std::result::Result<PinnedReservation, PinnedRefusal> {
        let mut state = self.state.lock();
        let (limit, used) = *state;
        match used.checked_add(bytes) {
            Some(total) if total <= limit => {
                state.1 = total;
                Ok(PinnedReservation {
                    budget: self.clone(),
                    bytes,
                })
            }
            _ => Err(PinnedRefusal {
                what: what.to_string(),
                bytes,
                limit,
                used,
            }),
        }
    }

    /// Sets the limit; reservations already made stand even if they now exceed it.
    pub fn set_limit(&self, limit: u64) {
        self.state.lock().0 = limit;
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.state.lock().0
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.state.lock().1
    }
}

impl PinnedReservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for PinnedReservation {
    fn drop(&mut self) {
        let mut state = self.budget.state.lock();
        state.1 = state.1.saturating_sub(self.bytes);
    }
}

/// Parses a budget: bytes, a binary size (`KiB`, `MiB`, `GiB`, `TiB`) or `N%` of `host_ram`.
pub fn parse_budget(value: &str, host_ram: u64) -> std::result::Result<u64, String> {
    let v = value.trim();
    let bad = || format!("{PINNED_BUDGET_VAR}={value:?}: expected bytes, e.g. 8GiB, or 50%");
    if let Some(pct) = v.strip_suffix('%') {
        let pct: f64 = pct.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&pct) {
            return Err(format!(
                "{PINNED_BUDGET_VAR}={value:?}: a share must be 0-100%"
            ));
        }
        return Ok((host_ram as f64 * pct / 100.0) as u64);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" | "K" => 10,
        "MiB" | "M" => 20,
        "GiB" | "G" => 30,
        "TiB" | "T" => 40,
        _ => return Err(bad()),
    };
    num.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// The default budget: half of host RAM (the rest stays pageable for the OS, the model
/// loader's copies and everything else on the machine).
pub fn default_budget(host_ram: Option<u64>) -> u64 {
    host_ram.map_or(UNKNOWN_RAM_BUDGET, |ram| ram / 2)
}

/// Host RAM from `/proc/meminfo` (`MemTotal`), when it can be read.
fn host_ram() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The process-wide budget: [`PINNED_BUDGET_VAR`] when set and valid, else
/// [`default_budget`]; change it with [`PinnedBudget::set_limit`] before loading models.
pub fn pinned_budget() -> &'static Arc<PinnedBudget> {
    static BUDGET: OnceLock<Arc<PinnedBudget>> = OnceLock::new();
    BUDGET.get_or_init(|| {
        let ram = host_ram();
        let limit = match std::env::var(PINNED_BUDGET_VAR) {
            Ok(v) => parse_budget(&v, ram.unwrap_or(UNKNOWN_RAM_BUDGET * 2)).unwrap_or_else(|e| {
                tracing::warn!("{e}; using the default (half of host RAM)");
                default_budget(ram)
            }),
            Err(_) => default_budget(ram),
        };
        PinnedBudget::new(limit)
    })
}

#[cfg(test)]
mod tests {
    use super::{PinnedBudget, default_budget, parse_budget};

    #[test]
    fn reservations_count_against_the_limit_and_return_when_dropped() {
        let budget = PinnedBudget::new(100);
        let a = budget.reserve(60, "a").unwrap();
        assert_eq!((budget.used(), a.bytes()), (60, 60));
        let refused = budget.reserve(41, "table 'b'").unwrap_err();
        assert_eq!((refused.bytes, refused.limit, refused.used), (41, 100, 60));
        let msg = refused.to_string();
        assert!(
            msg.contains("table 'b'") && msg.contains("COHOST_PINNED_BUDGET"),
            "{msg}"
        );
        let b = budget.reserve(40, "b").unwrap();
        assert_eq!(budget.used(), 100, "exactly the limit is allowed");
        drop(a);
        assert_eq!(budget.used(), 40);
        let c = budget.reserve(60, "c").unwrap();
        drop((b, c));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_lowered_limit_keeps_reservations_and_refuses_new_ones() {
        let budget = PinnedBudget::new(100);
        let a = budget.reserve(80, "a").unwrap();
        budget.set_limit(50);
        assert_eq!((budget.limit(), budget.used()), (50, 80));
        assert!(budget.reserve(1, "b").is_err());
        drop(a);
        assert!(budget.reserve(50, "c").is_ok());
    }

    #[test]
    fn overflowing_and_zero_reservations_do_not_panic() {
        let budget = PinnedBudget::new(u64::MAX);
        let _a = budget.reserve(u64::MAX - 1, "a").unwrap();
        assert!(budget.reserve(2, "b").is_err(), "overflow is a refusal");
        assert!(budget.reserve(1, "c").is_ok());
        let zero = PinnedBudget::new(0);
        assert!(zero.reserve(0, "empty").is_ok());
        assert!(zero.reserve(1, "one").is_err());
    }

    #[test]
    fn budgets_parse_bytes_units_and_shares() {
        let ram = 64u64 << 30;
        assert_eq!(parse_budget("4096", ram), Ok(4096));
        assert_eq!(parse_budget("512MiB", ram), Ok(512 << 20));
        assert_eq!(parse_budget(" 8 GiB ", ram), Ok(8 << 30));
        assert_eq!(parse_budget("50%", ram), Ok(32 << 30));
        assert_eq!(parse_budget("0", ram), Ok(0));
        for bad in ["", "lots", "8GB", "-1", "150%", "x%", "99999999999TiB"] {
            assert!(parse_budget(bad, ram).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_default_is_half_of_host_ram() {
        assert_eq!(default_budget(Some(64 << 30)), 32 << 30);
        assert_eq!(default_budget(None), 8 << 30);
    }
}
