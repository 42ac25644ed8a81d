//! A counting global allocator, compiled in only with the `count-allocations` feature, so that
//! the benchmark can report allocations per request (`/debug/allocations` on the health port).
//! Without the feature this module is empty and the system allocator is used unchanged.

#[cfg(feature = "count-allocations")]
mod imp {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU64, Ordering};

    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    static BYTES: AtomicU64 = AtomicU64::new(0);

    /// The system allocator, counting every allocation (a `realloc` counts as one).
    pub struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Allocations and bytes allocated since the process started.
    pub fn counts() -> Option<(u64, u64)> {
        Some((ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed)))
    }
}

#[cfg(feature = "count-allocations")]
pub use imp::Counting;

/// Allocations and bytes allocated so far, when built with `count-allocations`.
pub fn counts() -> Option<(u64, u64)> {
    #[cfg(feature = "count-allocations")]
    return imp::counts();
    #[cfg(not(feature = "count-allocations"))]
    None
}
