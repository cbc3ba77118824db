//! Node side: read and change kernel network state over netlink, persist files, verify, revert, report
