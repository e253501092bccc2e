//! (being written) running the daemon.
