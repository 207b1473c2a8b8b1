//! One CPU hint shared by the hash tables on the hot paths (`scan`'s pair table, the window's group
//! index): ask for a cache line before it is needed, so that the memory latency of a row or record a
//! few ahead overlaps the work on this one. A hint has no effect on any result.

/// Asks the CPU to bring the cache line holding `p` into cache. It reads nothing and cannot fault, so any
/// address will do (a wrong guess only wastes the fetch).
#[inline(always)]
pub(crate) fn prefetch<T: ?Sized>(p: *const T) {
    // SAFETY: `prefetcht0` is part of SSE, which every x86_64 target has; it loads nothing into a register
    // and never faults, whatever the address. It buys `scan` and the detector their speed on working sets
    // larger than the cache (README "Performance").
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
