//! The bus over Redis: publishes what this instance queued, and hands what the others sent
//! to the UDP service (punch requests) or the relay (sessions). Reconnects with the same
//! capped back-off as the record stream.

use std::net::UdpSocket;
use std::rc::Rc;
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::{FutureExt, StreamExt};

use super::Dest;
use super::codec::Message;
use crate::server::Shared;
use crate::store::redis::{Redis, StoreError};
use crate::store::{RECONNECT_MAX_MS, RECONNECT_MIN_MS};

/// Messages published per round trip at most.
pub const PUBLISH_BATCH: usize = 256;

/// Where messages from the bus go.
pub(crate) struct Sinks {
    /// The UDP service's main socket: forwards leave from it.
    pub(crate) udp: Option<Rc<Async<UdpSocket>>>,
    /// The relay's inbox.
    pub(crate) relay: Option<async_channel::Sender<Vec<u8>>>,
}

/// Runs as long as the server.
pub(crate) async fn run(
    shared: Rc<Shared>,
    redis: Rc<Redis>,
    out: async_channel::Receiver<(Dest, Vec<u8>)>,
    sinks: Sinks,
) {
    publish_loop(&shared, &redis, out)
        .or(subscribe_loop(&shared, &redis, &sinks))
        .await;
}

fn channel(redis: &Redis, dest: Dest) -> String {
    match dest {
        Dest::All => redis.keys().bus(),
        Dest::To(i) => redis.keys().bus_of(&i.to_string()),
    }
}

async fn publish_loop(
    shared: &Shared,
    redis: &Redis,
    out: async_channel::Receiver<(Dest, Vec<u8>)>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while let Ok(first) = out.recv().await {
        batch.clear();
        batch.push(first);
        while batch.len() < PUBLISH_BATCH {
            match out.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let messages: Vec<(String, Vec<u8>)> = batch
            .drain(..)
            .map(|(d, b)| (channel(redis, d), b))
            .collect();
        let n = messages.len() as u64;
        let r = redis.publish(&messages).await;
        let mut app = shared.app.borrow_mut();
        match r {
            Ok(()) => app.metrics.redis.bus_sent += n,
            Err(e) => {
                app.metrics.redis.bus_dropped += n;
                log::debug!("bus: {n} messages not published: {e}");
            }
        }
    }
}

async fn subscribe_loop(shared: &Shared, redis: &Redis, sinks: &Sinks) {
    let mut backoff = RECONNECT_MIN_MS;
    loop {
        let e = session(shared, redis, sinks, &mut backoff).await;
        set_up(shared, false);
        log::warn!(
            "bus to the other instances down ({e}); punch requests and relay sessions reach \
             only this instance's peers; retrying in {backoff} ms"
        );
        Timer::after(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(RECONNECT_MAX_MS);
    }
}

fn set_up(shared: &Shared, up: bool) {
    let mut app = shared.app.borrow_mut();
    app.metrics.redis.bus_up = up;
    if let Some(b) = app.bus.as_mut() {
        b.up = up;
    }
}

async fn session(shared: &Shared, redis: &Redis, sinks: &Sinks, backoff: &mut u64) -> StoreError {
    let me = match shared.app.borrow().bus.as_ref() {
        Some(b) => b.me,
        None => return StoreError::Down,
    };
    let channels = [redis.keys().bus(), redis.keys().bus_of(&me.to_string())];
    let mut ps = match redis.subscribe(&channels).await {
        Ok(ps) => ps,
        Err(e) => return e,
    };
    set_up(shared, true);
    *backoff = RECONNECT_MIN_MS;
    log::info!("bus to the other instances up (this instance is {me})");
    let mut stream = ps.on_message();
    loop {
        let next = async { Some(stream.next().await) }
            .or(async {
                Timer::after(Duration::from_secs(1)).await;
                None
            })
            .await;
        match next {
            // No message for a second: still fine while the record stream is.
            None if redis.is_up() => {}
            None => return StoreError::Down,
            Some(None) => return StoreError::BadReply("subscription ended"),
            Some(Some(msg)) => dispatch(shared, sinks, msg.get_payload_bytes()),
        }
    }
}

/// Handles one message from the bus.
pub(crate) fn dispatch(shared: &Shared, sinks: &Sinks, bytes: &[u8]) {
    let decoded = Message::decode(bytes);
    let mut app = shared.app.borrow_mut();
    let me = app.bus.as_ref().map(|b| b.me);
    let (from, msg) = match decoded {
        Ok(x) => x,
        Err(e) => {
            app.metrics.redis.bus_bad += 1;
            log::debug!("bus: a message that does not decode ({e}); dropped");
            return;
        }
    };
    if Some(from) == me {
        return;
    }
    app.metrics.redis.bus_received += 1;
    match msg {
        Message::Punch {
            target,
            target_key,
            requester,
            nonce,
            addrs,
        } => {
            let now = shared.now();
            let d = app.punch_from_bus(&target, target_key, &requester, nonce, addrs, now);
            drop(app);
            if let (Some(d), Some(sock)) = (d, &sinks.udp) {
                crate::server::udp::send(sock, &d.bytes, d.to);
            }
        }
        Message::RelayOpen { .. } | Message::Bridged { .. } => {
            let queued = sinks
                .relay
                .as_ref()
                .is_some_and(|tx| tx.try_send(bytes.to_vec()).is_ok());
            if !queued && sinks.relay.is_some() {
                app.metrics.redis.bus_dropped += 1;
            }
        }
    }
}
