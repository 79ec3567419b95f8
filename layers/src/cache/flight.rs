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

/// The flights of one namespace, by slot key and the generation their reads
/// saw: a read issued after an invalidation sees a newer generation, so it
/// never joins a flight started before it.
#[derive(Default)]
pub(crate) struct Flights(HashMap<(String, u64), Flight>);

impl Flights {
    pub(crate) fn get(&self, key: &(String, u64)) -> Option<Flight> {
        self.0.get(key).cloned()
    }

    pub(crate) fn insert(&mut self, key: (String, u64), flight: Flight) {
        self.0.insert(key, flight);
    }

    pub(crate) fn remove(&mut self, key: &(String, u64)) {
        self.0.remove(key);
    }
}
