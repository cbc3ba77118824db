//! The netconf options shared by `multinic agent` and `multinic render`, so both read the same
//! flags and environment and always build the same `NetOptions`.

use multinic_netconf::{NetOptions, NicSysctls};

/// Largest base for route tables, metrics and rule priorities: leaves room for the ten slots
/// and stays far from u32::MAX.
const MAX_BASE: i64 = 2_000_000_000;

/// Per-NIC routing and sysctl options.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// Give each NIC its own route table and a `from <address>` rule, so replies leave through
    /// the NIC the request came in on.
    #[arg(long, env = "MULTINIC_POLICY_ROUTING", default_value_t = true, action = clap::ArgAction::Set)]
    pub policy_routing: bool,
    /// Shorthand for `--policy-routing false`.
    #[arg(long)]
    pub no_policy_routing: bool,
    /// Route table of slot N is BASE + N.
    #[arg(long, env = "MULTINIC_ROUTE_TABLE_BASE", default_value_t = NetOptions::default().route_table_base,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BASE))]
    pub route_table_base: u32,
    /// Metric of the routes of slot N is BASE + N.
    #[arg(long, env = "MULTINIC_ROUTE_METRIC_BASE", default_value_t = NetOptions::default().route_metric_base,
          value_parser = clap::value_parser!(u32).range(0..=MAX_BASE))]
    pub route_metric_base: u32,
    /// Priority of the `from <address>` rule of slot N is BASE + N.
    #[arg(long, env = "MULTINIC_RULE_PRIORITY_BASE", default_value_t = NetOptions::default().rule_priority_base,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BASE))]
    pub rule_priority_base: u32,
    /// Add addresses with noprefixroute: no on-link route for them in the main table (on disk
    /// only where the file format can say so).
    #[arg(long, env = "MULTINIC_NOPREFIXROUTE")]
    pub noprefixroute: bool,
    /// Set the multi-homing sysctls (arp_ignore=1, arp_announce=2, rp_filter=2) per NIC, now
    /// and in sysctl.d.
    #[arg(long, env = "MULTINIC_SYSCTLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub sysctls: bool,
    /// Shorthand for `--sysctls false`.
    #[arg(long)]
    pub no_sysctls: bool,
}

impl NetArgs {
    /// The options these flags describe.
    pub fn net_options(&self) -> NetOptions {
        NetOptions {
            policy_routing: self.policy_routing && !self.no_policy_routing,
            route_table_base: self.route_table_base,
            route_metric_base: self.route_metric_base,
            rule_priority_base: self.rule_priority_base,
            noprefixroute: self.noprefixroute,
            sysctls: (self.sysctls && !self.no_sysctls).then(NicSysctls::default),
        }
    }
}
