//! The phone book server (work in progress).
