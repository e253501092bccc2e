//! (being written) The event exchange: publish, forward, subscribe with filters.

/// Fans events out to subscribers.
#[derive(Clone, Default)]
pub struct Exchange {}
