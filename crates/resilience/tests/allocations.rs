//! Heap allocations per call on the success path, counted by a global allocator.
//!
//! The allocator counts only the allocations of the thread that makes them, so tests running in
//! parallel on other threads do not disturb a count. Every call is polled once with a no-op waker,
//! outside any runtime, so the count contains the library's allocations and none of an executor's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use resilience::{Bulkhead, BulkheadConfig, CircuitBreaker, CircuitBreakerConfig, Config, Manager};

/// Forwards to the system allocator and counts allocations on the calling thread.
struct CountingAllocator;

thread_local! {
    // A const-initialized `Cell` has no destructor and needs no lazy initialization, so reading
    // it from inside the allocator cannot allocate or recurse.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    // `try_with` fails only while the thread is being torn down; those allocations are not ours.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every method passes its arguments unchanged to the system allocator and returns what it
// returns, so this allocator keeps the system allocator's contract. Counting only touches a
// thread-local integer.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract for `layout`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: `ptr` was allocated by this allocator, which is the system allocator, with
        // `layout`, as the caller of `GlobalAlloc::realloc` guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by the system allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Calls made before counting, so one-time set-up (a provider's stack, a thread-local slot) is
/// not counted as a per-call cost.
const WARM_UP_CALLS: u64 = 100;

/// Calls counted.
const COUNTED_CALLS: u64 = 1_000;

/// Polls `future` once and returns its output. The success paths measured here never wait.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the call waited, so it is not the uncontended success path"),
    }
}

/// Returns the allocations of [`COUNTED_CALLS`] calls of `call`, after [`WARM_UP_CALLS`] calls.
fn allocations_of(mut call: impl FnMut()) -> u64 {
    for _ in 0..WARM_UP_CALLS {
        call();
    }
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..COUNTED_CALLS {
        call();
    }
    ALLOCATIONS.with(Cell::get) - before
}

async fn upstream() -> Result<u64, std::io::Error> {
    Ok(7)
}

#[test]
fn counter_sees_an_allocation() {
    let allocations = allocations_of(|| {
        std::hint::black_box(Box::new(7_u64));
    });

    assert_eq!(allocations, COUNTED_CALLS);
}

#[test]
fn breaker_closed_execute_allocates_nothing() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig::default()).unwrap();

    let allocations = allocations_of(|| {
        let value = ready(breaker.execute(upstream)).unwrap();
        assert_eq!(value, 7);
    });

    assert_eq!(
        allocations, 0,
        "allocations in {COUNTED_CALLS} closed-circuit calls"
    );
    assert_eq!(breaker.stats().successes, WARM_UP_CALLS + COUNTED_CALLS);
}

#[test]
fn bulkhead_uncontended_execute_allocates_nothing() {
    let bulkhead = Bulkhead::new(BulkheadConfig::default()).unwrap();

    let allocations = allocations_of(|| {
        let value = ready(bulkhead.execute(upstream)).unwrap();
        assert_eq!(value, 7);
    });

    assert_eq!(
        allocations, 0,
        "allocations in {COUNTED_CALLS} uncontended calls"
    );
    assert_eq!(bulkhead.stats().active, 0);
}

/// Reports the manager's allocations per call, and checks that `execute` on a provider that
/// already exists allocates nothing.
#[test]
fn manager_success_allocations() {
    let manager: Manager<u64> = Manager::new(Config::default()).unwrap();

    let execute = allocations_of(|| {
        let value = ready(manager.execute("bench", |_| upstream())).unwrap();
        assert_eq!(value, 7);
    });
    let without_key = allocations_of(|| {
        let served = ready(manager.execute_with_fallback("bench", None, |_| upstream())).unwrap();
        assert_eq!(served.value, 7);
    });
    let with_key = allocations_of(|| {
        let served =
            ready(manager.execute_with_fallback("bench", Some("key"), |_| upstream())).unwrap();
        assert_eq!(served.value, 7);
    });

    let per_call = |allocations: u64| allocations as f64 / COUNTED_CALLS as f64;
    println!(
        "Manager::execute: {} allocations per call",
        per_call(execute)
    );
    println!(
        "Manager::execute_with_fallback without a cache key: {} allocations per call",
        per_call(without_key)
    );
    println!(
        "Manager::execute_with_fallback with a cache key: {} allocations per call",
        per_call(with_key)
    );
    assert_eq!(
        execute, 0,
        "allocations in {COUNTED_CALLS} calls of Manager::execute"
    );
}
