//! Peer library (built in issue 3).
