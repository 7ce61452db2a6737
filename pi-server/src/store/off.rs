//! Stand-ins for a build without the `redis` feature: the types exist so that the server's
//! code reads the same, but no value of them can be made (`redis-url` is refused).

/// Stand-in for the Redis connection.
pub mod redis {
    /// Uninhabited: a build without Redis never has one.
    #[derive(Debug)]
    pub enum Redis {}
}

pub(crate) mod replicate {
    use super::redis::Redis;
    use crate::server::Shared;
    use std::rc::Rc;

    /// Uninhabited.
    #[derive(Debug)]
    pub(crate) enum Ready {}

    pub(crate) async fn run(_: Rc<Shared>, redis: Rc<Redis>, _: Option<Ready>) {
        match *redis {}
    }
}

pub(crate) mod commit {
    use super::redis::Redis;
    use crate::api::Pending;
    use crate::server::Shared;

    pub(crate) async fn finish(
        _: &Shared,
        redis: &Redis,
        _: &Pending,
        _: bool,
        _: &mut Vec<u8>,
    ) -> bool {
        match *redis {}
    }
}
