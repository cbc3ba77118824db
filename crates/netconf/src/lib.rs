//! Pure node network model and renderers for netplan, NetworkManager keyfiles, ifcfg and
//! systemd .link files. No I/O: callers hand in validated data and get file contents back.

pub mod model;

pub use model::{
    DesiredNic, DesiredNode, NetOptions, NicSysctls, NoFreeSlot, PolicyRouting, slot_name,
};
