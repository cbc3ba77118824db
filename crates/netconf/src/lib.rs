//! Pure node network model and renderers for netplan, NetworkManager keyfiles, ifcfg and
//! systemd .link files. No I/O: callers hand in validated data and get file contents back.

pub mod flavor;
pub mod model;
pub mod owned;
pub mod render;

mod ifcfg;
mod keyfile;
mod link;
mod netplan;
mod sysctl;

pub use flavor::{OsFlavor, UnknownFlavor, UnknownOs, owned_dirs};
pub use model::{
    DesiredNic, DesiredNode, NetOptions, NicSysctls, NoFreeSlot, PolicyRouting, slot_name,
};
pub use owned::{MARKER_PREFIX, OwnedFile, parse_owned};
pub use render::{RenderedFile, render};
