//! One agent run's outcome as the hand-off tests read it, and the inputs they give it.

/// One agent run.
pub struct AgentRun {
    pub code: i32,
    pub report: String,
    pub stderr: String,
}

impl AgentRun {
    /// (name, reason, message) of each interface in the report.
    pub fn interfaces(&self) -> Vec<(String, String, String)> {
        let v: serde_json::Value = serde_json::from_str(&self.report).unwrap_or_else(|e| {
            panic!("report is not JSON ({e}): {}\n{}", self.report, self.stderr)
        });
        v["interfaces"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|i| {
                let s = |k: &str| i[k].as_str().unwrap_or("").to_owned();
                (s("name"), s("reason"), s("message"))
            })
            .collect()
    }

    /// (reason, message) of the NIC named `name` in the report.
    pub fn nic(&self, name: &str) -> (String, String) {
        self.interfaces()
            .into_iter()
            .find(|i| i.0 == name)
            .map(|i| (i.1, i.2))
            .unwrap_or_else(|| panic!("{name} is not in the report: {}", self.report))
    }
}

/// The node spec JSON for `(mac, address, cidr)` NICs.
pub fn spec(nics: &[(&str, &str, &str)]) -> String {
    let items: Vec<String> = nics
        .iter()
        .map(|(mac, address, cidr)| {
            format!(r#"{{"macAddress":"{mac}","address":"{address}","cidr":"{cidr}"}}"#)
        })
        .collect();
    format!(
        r#"{{"nodeName":"worker-01","interfaces":[{}]}}"#,
        items.join(",")
    )
}
