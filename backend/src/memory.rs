//! Gives memory the allocator holds but nobody uses back to the operating system. glibc keeps
//! the pages freed after a burst (thousands of first polls at once, a reconnect storm) in its
//! arenas, so the resident size would stay at the burst's peak for good; the janitor calls
//! [`release_free_pages`] once a pass (a minute).

/// Returns free heap pages to the operating system (glibc's `malloc_trim`: every arena, not
/// only the top of the main one). A no-op with another allocator.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions: it walks the allocator's own free lists under
    // the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn pages_freed_in_the_middle_of_the_heap_go_back() {
        const MB: u64 = 1 << 20;
        // 64 MiB in small blocks (each below the mmap threshold, so from the heap), touched,
        // then freed except for a last one that keeps glibc from trimming the top by itself.
        let mut blocks: Vec<Vec<u8>> = (0..16 * 1024).map(|_| vec![1u8; 4096]).collect();
        let fence = blocks.pop();
        let before = resident_bytes();
        drop(blocks);
        let freed = resident_bytes();
        release_free_pages();
        let after = resident_bytes();
        drop(fence);
        assert!(
            freed > after + 32 * MB,
            "resident {} MiB with 64 MiB allocated, {} MiB freed, {} MiB released",
            before / MB,
            freed / MB,
            after / MB
        );
    }
}
