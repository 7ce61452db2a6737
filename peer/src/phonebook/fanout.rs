//! Asking several phone books at once, so that one that is down (or whose packets vanish, so
//! every request waits out its timeout) never holds up the others.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// A request to one phone book.
pub(crate) type Ask<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs every request at once. Returns when all have finished, or `grace` after the first
/// result that `enough` accepts: the requests still running then are dropped (`None`).
pub(crate) async fn all_with_grace<T>(
    asks: Vec<Ask<'_, T>>,
    enough: impl Fn(&T) -> bool,
    grace: Duration,
) -> Vec<Option<T>> {
    let mut asks: Vec<Option<Ask<'_, T>>> = asks.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = asks.iter().map(|_| None).collect();
    let mut deadline: Option<Pin<Box<smol::Timer>>> = None;
    std::future::poll_fn(|cx| {
        for (i, slot) in asks.iter_mut().enumerate() {
            if let Some(ask) = slot
                && let Poll::Ready(v) = ask.as_mut().poll(cx)
            {
                if deadline.is_none() && enough(&v) {
                    deadline = Some(Box::pin(smol::Timer::after(grace)));
                }
                out[i] = Some(v);
                *slot = None;
            }
        }
        if asks.iter().all(Option::is_none) {
            return Poll::Ready(());
        }
        if let Some(t) = deadline.as_mut()
            && t.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await;
    out
}

/// Runs the requests in order, each `stagger` after the previous one started (or at once when
/// every started one has finished), until one gives a result that `accept` takes: that one.
/// Otherwise, every result, in order.
pub(crate) async fn first_staggered<T>(
    asks: Vec<Ask<'_, T>>,
    stagger: Duration,
    accept: impl Fn(&T) -> bool,
) -> Result<T, Vec<T>> {
    let total = asks.len();
    let mut waiting = asks.into_iter();
    let mut running: Vec<(usize, Ask<'_, T>)> = Vec::new();
    let mut done: Vec<(usize, T)> = Vec::new();
    let mut next_at: Pin<Box<smol::Timer>> = Box::pin(smol::Timer::after(Duration::ZERO));
    let mut started = 0usize;
    let found = std::future::poll_fn(|cx| {
        loop {
            // Start the next one when its time came, or when nothing is running.
            if started < total && (running.is_empty() || next_at.as_mut().poll(cx).is_ready()) {
                if let Some(ask) = waiting.next() {
                    running.push((started, ask));
                    started += 1;
                    next_at.set_after(stagger);
                }
                continue;
            }
            break;
        }
        let mut i = 0;
        while i < running.len() {
            if let Poll::Ready(v) = running[i].1.as_mut().poll(cx) {
                let (index, _) = running.swap_remove(i);
                if accept(&v) {
                    return Poll::Ready(Some(v));
                }
                done.push((index, v));
            } else {
                i += 1;
            }
        }
        if started == total && running.is_empty() {
            return Poll::Ready(None);
        }
        if started < total && running.is_empty() {
            // One finished without an answer we take: the next starts now.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await;
    match found {
        Some(v) => Ok(v),
        None => {
            done.sort_by_key(|(i, _)| *i);
            Err(done.into_iter().map(|(_, v)| v).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after<'a>(ms: u64, v: u32) -> Ask<'a, u32> {
        Box::pin(async move {
            smol::Timer::after(Duration::from_millis(ms)).await;
            v
        })
    }

    fn never<'a>() -> Ask<'a, u32> {
        Box::pin(std::future::pending())
    }

    #[test]
    fn all_with_grace_drops_a_request_that_never_ends_once_one_succeeded() {
        smol::block_on(async {
            let out = all_with_grace(
                vec![never(), after(5, 1), after(10, 0)],
                |v| *v == 1,
                Duration::from_millis(50),
            )
            .await;
            assert_eq!(out, vec![None, Some(1), Some(0)]);
            // Without a success, everything is awaited.
            let out =
                all_with_grace(vec![after(20, 0), after(5, 0)], |v| *v == 1, Duration::ZERO).await;
            assert_eq!(out, vec![Some(0), Some(0)]);
        });
    }

    #[test]
    fn first_staggered_goes_past_a_silent_first_and_a_refusing_second() {
        smol::block_on(async {
            let got = first_staggered(
                vec![never(), after(1, 0), after(1, 7)],
                Duration::from_millis(30),
                |v| *v != 0,
            )
            .await;
            assert_eq!(got, Ok(7), "past a first that never answers");
            let all = first_staggered(
                vec![after(3, 0), after(1, 0)],
                Duration::from_secs(60),
                |v| *v != 0,
            )
            .await;
            assert_eq!(all, Err(vec![0, 0]), "all refused: every result, in order");
            let none: Result<u32, Vec<u32>> =
                first_staggered(Vec::new(), Duration::ZERO, |_| true).await;
            assert_eq!(none, Err(Vec::new()));
        });
    }
}
