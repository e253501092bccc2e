//! (being written) corrald's configuration file.
