//! Keeping a long-lived shim small: glibc's allocator and thread-stack cache tuned for a
//! process whose threads come and go.

/// Set in the server's environment by `start` (glibc reads it at exec): exited threads' stacks
/// are freed instead of cached with their pages resident.
pub const GLIBC_TUNABLES: &str = "glibc.pthread.stack_cache_size=0";

/// One arena instead of one per thread (each would keep its pages after its thread left),
/// big blocks mapped and unmapped on their own, free memory at the top of the heap returned
/// early. Also drops `GLIBC_TUNABLES` from the environment so runc does not inherit it.
pub fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; this runs before any other thread
    // exists, so changing the environment races with nobody.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
    std::env::remove_var("GLIBC_TUNABLES");
}

/// Gives freed heap memory back to the system after a burst of work.
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory the allocator holds.
    unsafe {
        libc::malloc_trim(0);
    }
}
