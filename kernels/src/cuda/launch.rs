//! What the launches of [`CudaOps`](super::CudaOps) share: cross-lane ordering, shape and
//! argument checks, and asynchronous host-to-device copies.

use super::err;
use super::tensor::CudaTensor;
use crate::{KernelError, Result};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtrMut, DeviceRepr};
use std::sync::Arc;

/// The stream operations [`CrossLane`] needs (a trait so its logic is tested on the CPU).
pub(crate) trait StreamOrder {
    /// Whether `self` and `other` are the same stream.
    fn same(&self, other: &Self) -> bool;
    /// Makes `self` wait (on the device) for the work queued so far on `other`.
    fn wait_for(&self, other: &Self) -> Result<()>;
    /// Blocks the host until the work queued so far on `self` is done.
    fn finish(&self) -> Result<()>;
}

impl StreamOrder for CudaStream {
    fn same(&self, other: &Self) -> bool {
        self.cu_stream() == other.cu_stream()
    }

    fn wait_for(&self, other: &Self) -> Result<()> {
        self.join(other).map_err(err("cross-lane wait"))
    }

    fn finish(&self) -> Result<()> {
        self.synchronize().map_err(err("cuStreamSynchronize"))
    }
}

/// Orders other lanes' tensors around an op issued on `lane` (see [`CudaOps`] docs): on
/// entry the lane waits for each foreign home stream; on [`CrossLane::leave`] — or on drop,
/// so an early `?` between the two cannot skip it — each home waits for the lane, so a
/// tensor's stream-ordered free cannot overtake the op's read.
///
/// [`CudaOps`]: super::CudaOps
pub(crate) struct CrossLane<'a, S: StreamOrder = CudaStream> {
    lane: &'a S,
    foreign: Vec<Arc<S>>,
}

impl<'a> CrossLane<'a> {
    /// Enters an op on `lane` reading `inputs` (shared weights and tables need no ordering).
    pub(crate) fn enter(lane: &'a CudaStream, inputs: &[&CudaTensor]) -> Result<Self> {
        Self::around(
            lane,
            inputs
                .iter()
                .filter(|t| t.shared.is_none())
                .map(|t| t.data.stream()),
        )
    }
}

impl<'a, S: StreamOrder> CrossLane<'a, S> {
    /// Makes `lane` wait for every home stream other than itself (each once).
    pub(crate) fn around<'h>(
        lane: &'a S,
        homes: impl IntoIterator<Item = &'h Arc<S>>,
    ) -> Result<Self>
    where
        S: 'h,
    {
        let mut guard = CrossLane {
            lane,
            foreign: Vec::new(),
        };
        for home in homes {
            if home.same(lane) || guard.foreign.iter().any(|f| f.same(home)) {
                continue;
            }
            // On failure the guard drops here and releases the homes already joined.
            lane.wait_for(home)?;
            guard.foreign.push(home.clone());
        }
        Ok(guard)
    }

    /// Makes every foreign home wait for the op; the first failure is returned after all
    /// homes were handled.
    pub(crate) fn leave(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        let mut first = Ok(());
        for home in std::mem::take(&mut self.foreign) {
            if let Err(e) = home.wait_for(self.lane) {
                // Cannot order on the device: wait on the host instead, so the op is done
                // before the home stream goes on.
                let _ = self.lane.finish();
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

impl<S: StreamOrder> Drop for CrossLane<'_, S> {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Checks that `len` values make a `rows x cols` matrix.
pub(crate) fn check_len(what: &str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if rows.checked_mul(cols) != Some(len) {
        return Err(KernelError::Shape(format!(
            "{what}: {len} values do not make a [{rows}, {cols}] matrix"
        )));
    }
    Ok(())
}

/// `v` as the i32 a kernel or cuBLAS argument takes, or a shape error.
pub(crate) fn to_i32(v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| KernelError::Shape(format!("dimension {v} exceeds i32")))
}

/// Asynchronous host-to-device copy of `src` into `dst` on `stream`.
pub(crate) fn copy_htod<T: DeviceRepr>(
    stream: &CudaStream,
    src: &[T],
    dst: &mut CudaSlice<T>,
) -> Result<()> {
    stream
        .context()
        .bind_to_thread()
        .map_err(err("cuCtxSetCurrent"))?;
    let (dptr, _sync) = dst.device_ptr_mut(stream);
    // SAFETY: `dst` holds at least `src.len()` elements; `src` stays alive (pinned staging
    // guarded by its event, or pageable memory the driver consumes before returning).
    unsafe { cudarc::driver::result::memcpy_htod_async(dptr, src, stream.cu_stream()) }
        .map_err(err("cuMemcpyHtoDAsync"))
}

#[cfg(test)]
mod tests {
    use super::{CrossLane, StreamOrder};
    use crate::{KernelError, Result};
    use parking_lot::Mutex;
    use std::sync::Arc;

    /// A stream that records the ordering calls made on it into a shared log.
    struct Recorded {
        id: u32,
        log: Arc<Mutex<Vec<String>>>,
        /// `wait_for(other)` fails when `other.id` is listed here.
        refuse: Vec<u32>,
    }

    impl StreamOrder for Recorded {
        fn same(&self, other: &Self) -> bool {
            self.id == other.id
        }

        fn wait_for(&self, other: &Self) -> Result<()> {
            if self.refuse.contains(&other.id) {
                self.log
                    .lock()
                    .push(format!("{} cannot wait {}", self.id, other.id));
                return Err(KernelError::Cuda("refused".into()));
            }
            self.log
                .lock()
                .push(format!("{} waits {}", self.id, other.id));
            Ok(())
        }

        fn finish(&self) -> Result<()> {
            self.log.lock().push(format!("{} finished", self.id));
            Ok(())
        }
    }

    fn streams(n: u32, refuse: &[(u32, u32)]) -> (Vec<Arc<Recorded>>, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let s = (0..n)
            .map(|id| {
                Arc::new(Recorded {
                    id,
                    log: log.clone(),
                    refuse: refuse
                        .iter()
                        .filter(|(by, _)| *by == id)
                        .map(|&(_, of)| of)
                        .collect(),
                })
            })
            .collect();
        (s, log)
    }

    fn take(log: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *log.lock())
    }

    #[test]
    fn same_lane_inputs_need_no_ordering() {
        let (s, log) = streams(1, &[]);
        let g = CrossLane::around(&*s[0], [&s[0], &s[0]]).unwrap();
        g.leave().unwrap();
        assert!(take(&log).is_empty());
    }

    #[test]
    fn foreign_homes_are_joined_once_and_released_on_leave() {
        let (s, log) = streams(3, &[]);
        let g = CrossLane::around(&*s[0], [&s[1], &s[0], &s[1], &s[2]]).unwrap();
        assert_eq!(take(&log), ["0 waits 1", "0 waits 2"]);
        g.leave().unwrap();
        assert_eq!(take(&log), ["1 waits 0", "2 waits 0"]);
    }

    #[test]
    fn an_early_return_still_releases_the_homes() {
        let (s, log) = streams(2, &[]);
        let op = |fail: bool| -> Result<()> {
            let g = CrossLane::around(&*s[0], [&s[1]])?;
            if fail {
                Err(KernelError::Cuda("launch failed".into()))?;
            }
            g.leave()
        };
        assert!(op(true).is_err());
        assert_eq!(take(&log), ["0 waits 1", "1 waits 0"]);
        op(false).unwrap();
        assert_eq!(take(&log), ["0 waits 1", "1 waits 0"]);
    }

    #[test]
    fn a_failed_entry_releases_the_homes_already_joined() {
        let (s, log) = streams(3, &[(0, 2)]);
        assert!(CrossLane::around(&*s[0], [&s[1], &s[2]]).is_err());
        assert_eq!(take(&log), ["0 waits 1", "0 cannot wait 2", "1 waits 0"]);
    }

    #[test]
    fn a_failed_release_falls_back_to_the_host_and_goes_on() {
        let (s, log) = streams(3, &[(1, 0)]);
        let g = CrossLane::around(&*s[0], [&s[1], &s[2]]).unwrap();
        take(&log);
        assert!(g.leave().is_err());
        assert_eq!(take(&log), ["1 cannot wait 0", "0 finished", "2 waits 0"]);
    }
}
