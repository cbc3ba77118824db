//! Serves a simulator with instant agents until Ctrl-C: `cargo run -p multinic-sim --example serve -- [NODES]`.

use multinic_sim::{Sim, SimConfig};

#[tokio::main]
async fn main() {
    let nodes = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let sim = Sim::start(SimConfig::with_nodes(nodes))
        .await
        .expect("sim starts");
    println!("{}", sim.kubeconfig_path.display());
    let crd = sim.work_dir.join("crd.yaml");
    std::fs::write(&crd, multinic_api::crd_yaml()).expect("write crd.yaml");
    println!("{}", crd.display());
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
}
