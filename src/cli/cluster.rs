//! The data-parallel flags shared by `calibrate` and `train-generator` (`--devices`, and for
//! several machines `--nodes`, `--node-rank`, `--global-address`, `--node-address`), and the
//! `orchestrator` command that one process of a multi-machine run serves.

use anyhow::{bail, Result};

use brainmclip::model::device::{select, DeviceChoice};
use brainmclip::train::parallel::{serve_orchestrator, ws_port, Cluster, Nodes};

/// Set to run `--nodes` despite the burn-collective defect (to check a fixed burn).
const TRY_MULTI_MACHINE: &str = "BRAINMCLIP_TRY_MULTI_MACHINE";

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Train data-parallel on these devices, one worker thread each: `cuda:0,cuda:1`, `cpu`,
    /// `auto`. Overrides --device. Gradients are averaged by burn-collective.
    #[arg(long)]
    devices: Option<String>,
    /// Machines in a multi-machine run (each runs this same command with its own --node-rank
    /// and --node-address; one `brainmclip orchestrator` serves --global-address).
    #[arg(long, requires_all = ["node_rank", "global_address", "node_address"])]
    nodes: Option<u32>,
    /// This machine's rank, 0 to nodes-1; rank 0 writes the results.
    #[arg(long, requires = "nodes")]
    node_rank: Option<u32>,
    /// The orchestrator, e.g. ws://head:3000.
    #[arg(long, requires = "nodes")]
    global_address: Option<String>,
    /// Where the other machines reach this one, e.g. ws://10.0.0.2:3001 (its port serves
    /// gradients to the other machines).
    #[arg(long, requires = "nodes")]
    node_address: Option<String>,
}

impl ClusterArgs {
    /// The cluster these flags describe; `device` is the single-device fallback (--device or
    /// the config file's `device`).
    pub fn cluster(&self, device: DeviceChoice) -> Result<Cluster> {
        let devices = match &self.devices {
            Some(spec) => Cluster::parse_devices(spec)?,
            None => vec![select(device)?],
        };
        let cluster = Cluster {
            devices,
            nodes: None,
        };
        match (
            self.nodes,
            self.node_rank,
            &self.global_address,
            &self.node_address,
        ) {
            (None, ..) => Ok(cluster),
            (Some(_), ..) if std::env::var_os(TRY_MULTI_MACHINE).is_none() => {
                bail!(
                    "--nodes: training across machines is switched off: burn-collective 0.21.0 \
                     hangs at the second all-reduce across machines (its node sync keeps every \
                     peer it has seen, global/node/sync.rs), so a run would never finish. Use \
                     --devices on one machine; set {TRY_MULTI_MACHINE}=1 to try it anyway"
                )
            }
            (Some(count), Some(rank), Some(global), Some(node)) => {
                Ok(cluster.with_nodes(Nodes {
                    count,
                    rank,
                    global_address: global.clone(),
                    node_address: node.clone(),
                })?)
            }
            _ => bail!("--nodes needs --node-rank, --global-address and --node-address"),
        }
    }
}

#[derive(clap::Args)]
pub struct OrchestratorArgs {
    /// The port to serve on (the nodes' --global-address is ws://this-host:PORT).
    #[arg(long)]
    port: u16,
}

pub fn orchestrator_cmd(args: OrchestratorArgs) -> Result<()> {
    ws_port("--port", &format!("ws://localhost:{}", args.port))?;
    eprintln!(
        "burn-collective orchestrator on port {}; stop it with Ctrl-C once training is done",
        args.port
    );
    serve_orchestrator(args.port)?;
    Ok(())
}
