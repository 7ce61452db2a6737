//! Signature checks in batches. A connection with a signed request queues it and waits; one
//! task takes everything queued since it last ran (at most [`MAX_BATCH`]) and checks it with
//! one batch verification, which costs about half as much per signature as checking them
//! one by one. Nothing waits for a batch to fill: a lone request is checked as soon as the
//! task runs, so batches only grow when requests arrive faster than they are checked.

use crate::api::{App, Pending, verify_all};
use async_channel::{Receiver, Sender, TrySendError};
use std::cell::RefCell;

/// Most signatures checked in one batch (the gain levels off at a few dozen).
pub const MAX_BATCH: usize = 64;

type Job = (Pending, Sender<(Pending, bool)>);

/// The queue between connections and the checking task.
pub(crate) struct Verifier {
    tx: Sender<Job>,
    rx: Receiver<Job>,
}

impl Verifier {
    /// A queue for `capacity` requests: one per connection is enough, since a connection
    /// waits for its answer before it reads on.
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        Verifier { tx, rx }
    }

    /// Queues `p` and waits for its verdict; `None` if the server is stopping.
    pub(crate) async fn check(&self, p: Pending) -> Option<(Pending, bool)> {
        let (done_tx, done_rx) = async_channel::bounded(1);
        self.tx.send((p, done_tx)).await.ok()?;
        done_rx.recv().await.ok()
    }

    /// The checking task; runs as long as the server. Counts into `app`'s metrics.
    pub(crate) async fn run(&self, app: &RefCell<App>) {
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        loop {
            let Ok(first) = self.rx.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let verdicts = {
                let pending: Vec<&Pending> = batch.iter().map(|(p, _)| p).collect();
                verify_all(&pending)
            };
            {
                let m = &mut app.borrow_mut().metrics;
                m.signature_batches += 1;
                m.signatures_checked += batch.len() as u64;
            }
            for ((p, done), ok) in batch.drain(..).zip(verdicts) {
                // The connection may have gone; then nobody needs the verdict.
                if let Err(TrySendError::Full(_)) = done.try_send((p, ok)) {
                    log::error!("verdict channel full: a bug");
                }
            }
            // Let the connections answer before the next batch.
            futures_lite::future::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Now, Started};
    use crate::config::Config;
    use crate::http::parse_head;
    use async_executor::LocalExecutor;
    use phonebook_proto::{Keypair, PlayerName, Register};
    use std::rc::Rc;

    fn start(app: &mut App, body: &str, now: Now) -> Pending {
        let req = format!(
            "POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let head = parse_head(req.as_bytes(), 8192).unwrap();
        let mut out = Vec::new();
        match app.start(
            &head,
            &req.as_bytes()[head.len..],
            "192.0.2.7".parse().unwrap(),
            now,
            &mut out,
        ) {
            Started::Verify(p) => p,
            Started::Done(_) => panic!("answered at once: {}", String::from_utf8_lossy(&out)),
        }
    }

    /// Requests queued before the task runs are checked in one batch, and each gets its own
    /// verdict: the one forged signature among them is caught, the others pass.
    #[test]
    fn queued_requests_form_one_batch_with_separate_verdicts() {
        let now = Now {
            mono_ms: 1000,
            wall_ms: 1_764_000_000_000,
        };
        let app = Rc::new(RefCell::new(App::new(
            Config {
                capacity: 64,
                ..Config::default()
            },
            [1; 32],
        )));
        let verifier = Rc::new(Verifier::new(64));
        let ex = LocalExecutor::new();
        let mut waits = Vec::new();
        for i in 0..20u8 {
            let mut r = Register::sign_public(
                &Keypair::from_seed(&[i + 1; 32]),
                PlayerName::parse(&format!("Player Number@World{}", (b'a' + i) as char)).unwrap(),
                5000,
                now.wall_ms,
            );
            if i == 13 {
                r.port = 5001; // signed for 5000: forged
            }
            let p = start(&mut app.borrow_mut(), &r.to_json(), now);
            let v = verifier.clone();
            waits.push(ex.spawn(async move { v.check(p).await.map(|(_, ok)| ok) }));
        }
        let (v, a) = (verifier.clone(), app.clone());
        let _task = ex.spawn(async move { v.run(&a).await });
        let verdicts: Vec<Option<bool>> = smol::block_on(ex.run(async {
            let mut all = Vec::new();
            for w in waits {
                all.push(w.await);
            }
            all
        }));
        let expected: Vec<Option<bool>> = (0..20).map(|i| Some(i != 13)).collect();
        assert_eq!(verdicts, expected);
        let m = &app.borrow().metrics;
        assert_eq!((m.signatures_checked, m.signature_batches), (20, 1));
    }
}
