//! Single flight: master reads in progress in one namespace, joined by every
//! concurrent miss of the same slot at the same generation.

use std::collections::HashMap;

use futures_util::future::{BoxFuture, Shared};

use super::error::SharedError;
use crate::request::Response;

/// What a flight answers every waiter.
pub(crate) type FlightResult = Result<Response, SharedError>;

/// A master read in progress, shared by its waiters.
pub(crate) type Flight = Shared<BoxFuture<'static, FlightResult>>;

/// What a flight is keyed by: the slot key, the generation its reads saw,
/// and the token the backend recorded in their tickets (a shared backend's
/// own generation; `None` for in-process backends).
pub(crate) type FlightKey = (String, u64, Option<u64>);

/// The flights of one namespace, by slot key, the generation their reads saw
/// and the backend's token: a read issued after an invalidation sees a newer
/// generation (or, for an invalidation made in another process through a
/// shared backend, a newer token), so it never joins a flight started before
/// it.
#[derive(Default)]
pub(crate) struct Flights(HashMap<FlightKey, Flight>);

impl Flights {
    pub(crate) fn get(&self, key: &FlightKey) -> Option<Flight> {
        self.0.get(key).cloned()
    }

    pub(crate) fn insert(&mut self, key: FlightKey, flight: Flight) {
        self.0.insert(key, flight);
    }

    pub(crate) fn remove(&mut self, key: &FlightKey) {
        self.0.remove(key);
    }
}
