//! Backfill after a session's DDP socket comes back: what Rocket.Chat
//! emitted meanwhile is fetched as the user
//! ([`crate::rocketchat::backfill`]) and delivered like live events. This
//! is the scheduling. The DDP methods it asks first are limited per user;
//! but a server without them (Rocket.Chat 9) leaves the REST routes, and
//! a default Rocket.Chat allows 10 REST calls a minute per route for all
//! of imrelay's users together (they share one IP), while after a restart
//! every session comes back at once: so each REST call waits for its turn
//! on its route, users with connected clients first, at
//! `session.backfill_rate` calls a minute (0 when the users' role holds
//! `api-bypass-rate-limit`: `imrelay doctor` says so). At most
//! `session.backfill_concurrency` backfills run at a time.

use crate::config::SessionConfig;
use crate::rocketchat::backfill::{Methods, Route, Waits};
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore, SemaphorePermit};

/// The turns of every backfill, shared by the shards.
pub(crate) struct Backfills {
    /// One dispatcher per route, `None` when calls are not paced.
    routes: Option<[mpsc::UnboundedSender<Waiter>; 3]>,
    running: Semaphore,
    /// The DDP methods the server turned out to lack.
    pub(crate) methods: Methods,
}

/// A call waiting for its turn.
struct Waiter {
    urgent: bool,
    order: u64,
    go: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiter {
    /// Urgent first, then first come.
    fn cmp(&self, o: &Self) -> Ordering {
        self.urgent
            .cmp(&o.urgent)
            .then_with(|| o.order.cmp(&self.order))
    }
}

impl Backfills {
    /// Starts the dispatchers (on the current runtime) for `cfg`'s pace.
    pub(crate) fn start(cfg: &SessionConfig) -> Arc<Backfills> {
        let routes = (cfg.backfill_rate > 0).then(|| {
            let every = Duration::from_secs(60) / cfg.backfill_rate;
            [(); 3].map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(dispatch(rx, every));
                tx
            })
        });
        Arc::new(Backfills {
            routes,
            running: Semaphore::new(cfg.backfill_concurrency),
            methods: Methods::default(),
        })
    }

    /// A place among the backfills running at once.
    pub(crate) async fn place(&self) -> Option<SemaphorePermit<'_>> {
        self.running.acquire().await.ok()
    }

    /// Waits for a call's turn on `route`; `urgent` for a user with clients.
    pub(crate) async fn turn(&self, route: Route, urgent: bool) {
        let Some(routes) = &self.routes else {
            return;
        };
        static ORDER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let (go, wait) = oneshot::channel();
        let order = ORDER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if routes[route.index()]
            .send(Waiter { urgent, order, go })
            .is_ok()
        {
            let _ = wait.await;
        }
    }
}

/// One backfill under way. Its place among those running is given up while
/// it waits out a DDP limiter's refusal: that limit is this user's alone,
/// and another user's backfill can go meanwhile.
pub(crate) struct Running<'a> {
    backfills: &'a Backfills,
    place: RefCell<Option<SemaphorePermit<'a>>>,
    urgent: bool,
}

impl<'a> Running<'a> {
    /// Waits for a place; `urgent` for a user with clients.
    pub(crate) async fn start(backfills: &'a Backfills, urgent: bool) -> Running<'a> {
        Running {
            backfills,
            place: RefCell::new(backfills.place().await),
            urgent,
        }
    }
}

impl Waits for Running<'_> {
    async fn turn(&self, route: Route) {
        self.backfills.turn(route, self.urgent).await;
    }

    async fn pause(&self, wait: Duration) {
        drop(self.place.borrow_mut().take());
        tokio::time::sleep(wait).await;
        let place = self.backfills.place().await;
        *self.place.borrow_mut() = place;
    }
}

/// Hands out one turn every `every`, to the most urgent waiter. The
/// waiters are the sessions backfilling, so their number is bounded by the
/// users'.
async fn dispatch(mut rx: mpsc::UnboundedReceiver<Waiter>, every: Duration) {
    let mut waiting = BinaryHeap::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(w) => waiting.push(w),
                None => return,
            }
        }
        while let Ok(w) = rx.try_recv() {
            waiting.push(w);
        }
        let Some(w) = waiting.pop() else { continue };
        // A waiter that gave up does not use the turn.
        if w.go.send(()).is_ok() {
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_paced_and_users_with_clients_go_first() {
        let cfg = SessionConfig {
            backfill_rate: 10,
            ..SessionConfig::default()
        };
        let b = Backfills::start(&cfg);
        let start = tokio::time::Instant::now();
        let order = Arc::new(parking_lot::Mutex::new(vec![]));
        let mut tasks = vec![];
        // The first takes the free turn; then idle users queue, and a user
        // with clients arrives last but goes next.
        for (name, urgent) in [("a", false), ("b", false), ("c", false), ("d", true)] {
            let (b, order) = (Arc::clone(&b), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                b.turn(Route::Subscriptions, urgent).await;
                order.lock().push((name, start.elapsed().as_secs()));
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock(),
            vec![("a", 0), ("d", 6), ("b", 12), ("c", 18)],
            "one turn every 6 s at 10 a minute"
        );
        // The other route has its own budget.
        let t = tokio::time::Instant::now();
        b.turn(Route::SyncMessages, false).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn with_no_pace_a_turn_is_at_once() {
        let cfg = SessionConfig {
            backfill_rate: 0,
            ..SessionConfig::default()
        };
        let b = Backfills::start(&cfg);
        for _ in 0..100 {
            b.turn(Route::SyncMessages, false).await;
        }
    }
}
