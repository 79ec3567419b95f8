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
pub(crate) struct Flights(HashMap<String, Vec<(At, Flight)>, foldhash::fast::RandomState>);

/// The generation and token part of a [`FlightKey`].
type At = (u64, Option<u64>);

impl Flights {
    pub(crate) fn get(&self, key: &FlightKey) -> Option<Flight> {
        self.find(&key.0, key.1, key.2).cloned()
    }

    /// Whether a flight of slot `key` at this generation and token is in
    /// progress (looked up without building a [`FlightKey`]).
    pub(crate) fn has(&self, key: &str, generation: u64, token: Option<u64>) -> bool {
        self.find(key, generation, token).is_some()
    }

    fn find(&self, key: &str, generation: u64, token: Option<u64>) -> Option<&Flight> {
        self.0
            .get(key)?
            .iter()
            .find(|(at, _)| *at == (generation, token))
            .map(|(_, flight)| flight)
    }

    pub(crate) fn insert(&mut self, key: FlightKey, flight: Flight) {
        let (slot, generation, token) = key;
        let flights = self.0.entry(slot).or_default();
        flights.retain(|(at, _)| *at != (generation, token));
        flights.push(((generation, token), flight));
    }

    pub(crate) fn remove(&mut self, key: &FlightKey) {
        let (slot, generation, token) = key;
        if let Some(flights) = self.0.get_mut(slot.as_str()) {
            flights.retain(|(at, _)| *at != (*generation, *token));
            if flights.is_empty() {
                self.0.remove(slot.as_str());
            }
        }
    }
}
