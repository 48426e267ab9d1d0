//! Ctrl-C: one watch for the whole process, so a long operation can stop where it
//! can say what it kept, and the binary ends with exit code 130 either way.
//!
//! [`watch()`] (called once, by the binary, inside the runtime) takes SIGINT over: the
//! first Ctrl-C completes every [`interrupted`] future, and the binary drops the
//! command and says so. Code that cannot notice (a synchronous step that does not
//! yield) gets [`GRACE`]; after it, or at a second Ctrl-C, `give_up` ends the
//! process at once, as the signal itself would have. Without [`watch()`], SIGINT
//! keeps its default and [`interrupted`] never completes.

use std::future::Future as _;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::watch;

/// How long a command gets to stop by itself after Ctrl-C: an async step stops at
/// its next await, within milliseconds; a synchronous one would never notice.
pub const GRACE: Duration = Duration::from_secs(1);

/// Whether Ctrl-C was pressed.
static PRESSED: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(false));

/// Takes SIGINT over (see the module doc); `give_up` ends the process when the
/// command did not stop within [`GRACE`] or Ctrl-C came twice. Must be called
/// inside a tokio runtime.
pub fn watch(give_up: impl FnOnce() + Send + 'static) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return; // no handler could be installed: SIGINT keeps its default
        }
        PRESSED.send_replace(true);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = tokio::time::sleep(GRACE) => {}
        }
        give_up();
    });
}

/// Completes once Ctrl-C was pressed (never, unless [`watch()`] was called). Every poll
/// looks at the flag itself, so all of them agree from the moment it is set (a
/// notification reaches each waiter in turn).
pub async fn interrupted() {
    let mut pressed = PRESSED.subscribe();
    // `wait_for` fails only once the sender is gone, and a static never goes.
    let mut woken = std::pin::pin!(pressed.wait_for(|pressed| *pressed));
    std::future::poll_fn(|cx| {
        if *PRESSED.borrow() {
            return std::task::Poll::Ready(());
        }
        woken.as_mut().poll(cx).map(drop)
    })
    .await;
}
