//! Periodic work that thousands of actors do, spread over its period.

use actix::prelude::*;
use rand::Rng;
use std::time::Duration;

/// Runs `f` every `every`, first at a random point of the first period.
/// Actors started together (a restart, a reconnect storm, a bulk login)
/// would otherwise all tick in the same instant, every period: 9,000 client
/// pings in under a second, each a write, a pong and a read, in the middle
/// of the events.
pub fn run_interval_spread<A, F>(ctx: &mut A::Context, every: Duration, mut f: F)
where
    A: Actor,
    A::Context: AsyncContext<A>,
    F: FnMut(&mut A, &mut A::Context) + 'static,
{
    ctx.run_later(first_tick(every), move |act, ctx| {
        f(act, ctx);
        ctx.run_interval(every, f);
    });
}

fn first_tick(every: Duration) -> Duration {
    every.mul_f64(rand::rng().random_range(0.0..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ticks_fall_within_one_period_and_are_spread() {
        let every = Duration::from_secs(15);
        let ticks: Vec<Duration> = (0..1000).map(|_| first_tick(every)).collect();
        assert!(ticks.iter().all(|t| *t < every));
        // 1,000 draws put some in each tenth of the period (all but surely).
        for tenth in 0..10 {
            let (lo, hi) = (every * tenth / 10, every * (tenth + 1) / 10);
            assert!(
                ticks.iter().any(|t| (lo..hi).contains(t)),
                "none in tenth {tenth}"
            );
        }
    }
}
