//! Node apply engine: read kernel network state over netlink, plan, apply, persist files, verify, revert.
