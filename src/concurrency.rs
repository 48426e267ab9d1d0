//! Concurrency knobs, in one place so they can be tuned together, and the one
//! bounded fan-out helper every parallel step uses.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Blob downloads in flight at once. Registries and CDNs serve many streams
/// well; 8 keeps two cores busy hashing without tripping per-client limits
/// (skopeo uses 6 per image, hauler 16).
pub const PARALLEL_DOWNLOADS: usize = 8;
/// Images resolved at once by `lock`: manifest fetches are small and latency-bound.
pub const PARALLEL_RESOLVES: usize = 8;
/// Chunks buffered between a download and the thread hashing and writing it.
pub const CHUNKS_IN_FLIGHT: usize = 32;
/// Read size when copying blobs from a local OCI layout.
pub const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// Threads for CPU-bound work over many blobs (hashing, compressing): one per
/// core, so it runs at the hardware rate without oversubscribing.
pub fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// Runs `jobs` on the runtime with at most `limit` in flight. Returns their
/// results (in completion order), or the first error, in which case the jobs
/// still running are aborted.
pub async fn run_bounded<T, F>(
    limit: usize,
    jobs: impl IntoIterator<Item = F>,
) -> anyhow::Result<Vec<T>>
where
    F: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limit));
    let mut tasks = JoinSet::new();
    for job in jobs {
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            job.await
        });
    }
    let mut results = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(value)) => results.push(value),
            // Dropping the set on return aborts whatever is still running.
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(anyhow::anyhow!("a task panicked: {e}")),
        }
    }
    Ok(results)
}

/// `f` over every item on `threads` scoped threads, results in input order.
/// For many small CPU-and-file jobs (checking 1,000 lock entries): a task per
/// item on the async runtime costs more in wake-ups than the work itself.
pub fn map_blocking<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    *done[i].lock().expect("each slot is written once") = Some(result);
                }
            });
        }
    });
    done.into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("each slot is written once")
                .expect("every item was taken by a thread")
        })
        .collect()
}
