//! (being written) containerd's filter language.
