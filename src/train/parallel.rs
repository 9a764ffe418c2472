//! Data-parallel training on burn's own collective (`burn-collective`): which devices and
//! machines take part, which peer a worker thread is, its rows of each batch, and the calls that
//! keep the replicas identical (the gradient all-reduce, and agreement on the few numbers and
//! decisions every peer must share).
//!
//! Every peer holds a whole replica and its own optimiser. They start equal (the same seeded
//! weights, the same parameter ids) and stay equal because each applies the same averaged
//! gradient. A peer computes its loss on its rows of the batch, scaled by `rows x peers / batch`,
//! so burn's `Mean` all-reduce gives exactly the gradient of the whole batch's loss, whatever
//! the split. Only the lead peer (rank 0) writes files.
//!
//! This module never sums a tensor itself: the reduction is burn-collective's (tree across the
//! threads of a machine, ring across machines through its WebSocket orchestrator). It is not a
//! training loop: the loops in `projector_train.rs` and `generator.rs` call it.

use std::ops::Range;

use burn::collective::{self, AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation};
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorPrimitive;

use crate::model::device::{select, ComputeDevice, DeviceChoice};

#[derive(Debug, thiserror::Error)]
pub enum ParallelError {
    #[error("--devices {spec:?}: {message}")]
    Devices { spec: String, message: String },
    #[error("{0}")]
    Nodes(String),
    #[error("data-parallel peer {peer}: {message}")]
    Collective { peer: usize, message: String },
    #[error("data-parallel peer {peer}: {message}")]
    Disagreement { peer: usize, message: String },
    #[error("a data-parallel worker thread panicked: {0}")]
    Panicked(String),
}

/// The machines of a multi-machine run, as this process sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Nodes {
    /// Machines (processes) in the run.
    pub count: u32,
    /// This machine's place, 0-based; rank 0 holds the lead peer, which writes the files.
    pub rank: u32,
    /// The orchestrator every node registers with (`ws://host:port`).
    pub global_address: String,
    /// Where the other nodes reach this one (`ws://me:port`); its port serves tensors.
    pub node_address: String,
}

impl Nodes {
    fn check(&self) -> Result<u16, ParallelError> {
        if self.count < 2 {
            return Err(ParallelError::Nodes(format!(
                "--nodes {}: a multi-machine run needs at least 2 (leave --nodes out for one machine)",
                self.count
            )));
        }
        if self.rank >= self.count {
            return Err(ParallelError::Nodes(format!(
                "--node-rank {} with --nodes {}: ranks are 0 to {}",
                self.rank,
                self.count,
                self.count - 1
            )));
        }
        ws_port("--global-address", &self.global_address)?;
        ws_port("--node-address", &self.node_address)
    }
}

/// The port of a `ws://host:port` address.
pub fn ws_port(flag: &str, address: &str) -> Result<u16, ParallelError> {
    let bad = |why: &str| {
        ParallelError::Nodes(format!(
            "{flag} {address:?}: {why} (expected ws://host:port)"
        ))
    };
    let rest = address
        .strip_prefix("ws://")
        .ok_or_else(|| bad("not a ws:// address"))?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    port.trim_end_matches('/')
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("the port is not a number from 1 to 65535"))
}

/// Who trains: the devices of this machine (one worker thread each) and, for a multi-machine
/// run, the machines.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub devices: Vec<ComputeDevice>,
    pub nodes: Option<Nodes>,
}

impl Cluster {
    /// One device on one machine: no collective at all.
    pub fn single(device: ComputeDevice) -> Cluster {
        Cluster {
            devices: vec![device],
            nodes: None,
        }
    }

    /// `--devices`: `cpu`, `auto`, `cuda:0,cuda:1`, `wgpu`. `cpu,cpu` runs two peers on the
    /// CPU (both share its cores: a way to test the data-parallel path, not to go faster).
    pub fn parse_devices(spec: &str) -> Result<Vec<ComputeDevice>, ParallelError> {
        let bad = |message: String| ParallelError::Devices {
            spec: spec.to_string(),
            message,
        };
        let names: Vec<&str> = spec.split(',').map(str::trim).collect();
        if names.iter().any(|n| n.is_empty()) {
            return Err(bad("an empty entry (expected e.g. cuda:0,cuda:1)".into()));
        }
        let mut devices = Vec::new();
        for name in &names {
            let (kind, index) = match name.split_once(':') {
                Some((k, i)) => {
                    let i = i
                        .parse::<usize>()
                        .map_err(|_| bad(format!("{name:?}: the index is not a number")))?;
                    (k, Some(i))
                }
                None => (*name, None),
            };
            let choice = match kind {
                "cpu" => DeviceChoice::Cpu,
                "cuda" => DeviceChoice::Cuda,
                "wgpu" => DeviceChoice::Wgpu,
                "auto" if names.len() == 1 && index.is_none() => DeviceChoice::Auto,
                _ => {
                    return Err(bad(format!(
                        "{name:?} is not a device (cpu, cuda:N, wgpu, or auto alone)"
                    )))
                }
            };
            let device = select(choice).map_err(|e| bad(e.to_string()))?;
            let device = match (device, index) {
                (ComputeDevice::Cuda(_), Some(i)) => ComputeDevice::Cuda(i),
                (_, Some(_)) => return Err(bad(format!("{name:?}: only cuda takes an index"))),
                (d, None) => d,
            };
            devices.push(device);
        }
        let same_kind = devices
            .windows(2)
            .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
        if !same_kind {
            return Err(bad("all devices must be of one kind".into()));
        }
        for (i, d) in devices.iter().enumerate() {
            if matches!(d, ComputeDevice::Cuda(_) | ComputeDevice::Wgpu) && devices[..i].contains(d)
            {
                return Err(bad(format!("{d} is named twice")));
            }
        }
        if let Some(ComputeDevice::Cuda(i)) = devices
            .iter()
            .find(|d| matches!(d, ComputeDevice::Cuda(i) if *i >= cuda_count()))
        {
            return Err(bad(format!(
                "there is no CUDA GPU {i} (this machine has {})",
                cuda_count()
            )));
        }
        Ok(devices)
    }

    pub fn with_nodes(mut self, nodes: Nodes) -> Result<Cluster, ParallelError> {
        nodes.check()?;
        self.nodes = Some(nodes);
        Ok(self)
    }

    /// Peers in the whole run.
    pub fn world(&self) -> usize {
        self.devices.len() * self.nodes.as_ref().map_or(1, |n| n.count as usize)
    }

    /// True for the process holding the lead peer (it writes the results).
    pub fn is_lead_process(&self) -> bool {
        self.nodes.as_ref().is_none_or(|n| n.rank == 0)
    }

    fn collective_config(&self) -> Result<CollectiveConfig, ParallelError> {
        let mut config = CollectiveConfig::default()
            .with_num_devices(self.devices.len())
            .with_local_all_reduce_strategy(AllReduceStrategy::Tree(2));
        if let Some(n) = &self.nodes {
            let port = n.check()?;
            let address = |a: &str| {
                a.parse()
                    .map_err(|e: String| ParallelError::Nodes(format!("{a:?}: {e}")))
            };
            config = config
                .with_num_nodes(n.count)
                .with_global_address(address(&n.global_address)?)
                .with_node_address(address(&n.node_address)?)
                .with_data_service_port(port)
                .with_global_all_reduce_strategy(AllReduceStrategy::Ring);
        }
        Ok(config)
    }

    /// The peers of this machine, one per device, in rank order.
    pub fn local_peers(&self) -> Result<Vec<Peer>, ParallelError> {
        let world = self.world();
        let config = if world > 1 {
            Some(self.collective_config()?)
        } else {
            None
        };
        let base = self.nodes.as_ref().map_or(0, |n| n.rank as usize) * self.devices.len();
        Ok(self
            .devices
            .iter()
            .enumerate()
            .map(|(i, &device)| Peer {
                rank: base + i,
                world,
                device,
                config: config.clone(),
            })
            .collect())
    }
}

impl std::fmt::Display for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.devices.iter().map(|d| d.to_string()).collect();
        write!(f, "{}", names.join(" + "))?;
        if let Some(n) = &self.nodes {
            write!(f, " on node {} of {}", n.rank, n.count)?;
        }
        Ok(())
    }
}

#[cfg(feature = "cuda")]
fn cuda_count() -> usize {
    if !crate::model::device::cuda_usable() {
        return 0;
    }
    cudarc::driver::CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

#[cfg(not(feature = "cuda"))]
fn cuda_count() -> usize {
    0
}

/// One worker of a data-parallel run: its rank among all peers and its device.
#[derive(Debug, Clone)]
pub struct Peer {
    pub rank: usize,
    pub world: usize,
    pub device: ComputeDevice,
    /// None when this is the only peer: then nothing goes through the collective.
    config: Option<CollectiveConfig>,
}

/// Registration in the collective; leaving it when dropped.
pub struct Membership {
    leave: Option<(PeerId, fn(PeerId))>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some((id, leave)) = self.leave.take() {
            leave(id);
        }
    }
}

impl Peer {
    /// The only peer of a one-device run.
    pub fn solo(device: ComputeDevice) -> Peer {
        Peer {
            rank: 0,
            world: 1,
            device,
            config: None,
        }
    }

    pub fn is_lead(&self) -> bool {
        self.rank == 0
    }

    fn id(&self) -> PeerId {
        PeerId::from(self.rank as u32)
    }

    fn failed(&self, message: impl std::fmt::Display) -> ParallelError {
        ParallelError::Collective {
            peer: self.rank,
            message: message.to_string(),
        }
    }

    /// Registers with the collective (blocks until every peer of this machine has, and, across
    /// machines, until every node has reached the orchestrator). `B` is the backend the
    /// gradients live on (the autodiff backend's inner one).
    pub fn join<B: Backend>(&self, device: &B::Device) -> Result<Membership, ParallelError> {
        let Some(config) = &self.config else {
            return Ok(Membership { leave: None });
        };
        collective::register::<B>(self.id(), device.clone(), config.clone())
            .map_err(|e| self.failed(format!("joining the collective: {e:?}")))?;
        fn leave<B: Backend>(id: PeerId) {
            // Leaving fails only if this peer never joined; nothing to undo then.
            let _ = collective::finish_collective::<B>(id);
        }
        Ok(Membership {
            leave: Some((self.id(), leave::<B>)),
        })
    }

    /// This peer's rows of a batch of `n`: contiguous, the first `n % world` peers one more.
    pub fn rows(&self, n: usize) -> Range<usize> {
        let (base, extra) = (n / self.world, n % self.world);
        let start = self.rank * base + self.rank.min(extra);
        start..start + base + usize::from(self.rank < extra)
    }

    /// The factor on this peer's mean loss so that the mean over peers is the whole batch's.
    pub fn loss_weight(&self, n: usize) -> f32 {
        if n == 0 {
            return 0.0;
        }
        (self.rows(n).len() * self.world) as f32 / n as f32
    }

    /// The gradient averaged over all peers (unchanged for a single peer).
    pub fn reduce_grads<B: AutodiffBackend>(
        &self,
        grads: GradientsParams,
    ) -> Result<GradientsParams, ParallelError> {
        if self.config.is_none() {
            return Ok(grads);
        }
        grads
            .all_reduce::<B::InnerBackend>(self.id(), ReduceOperation::Mean)
            .map_err(|e| self.failed(format!("averaging the gradients: {e:?}")))
    }

    /// The mean of each value over all peers, the same numbers on every peer.
    pub fn mean<B: Backend>(
        &self,
        values: &[f64],
        device: &B::Device,
    ) -> Result<Vec<f64>, ParallelError> {
        if self.config.is_none() || values.is_empty() {
            return Ok(values.to_vec());
        }
        // Padded: the ring across machines splits a tensor into one part per machine.
        let mut data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        data.resize(values.len().max(self.world), 0.0);
        let len = data.len();
        let tensor = Tensor::<B, 1>::from_data(TensorData::new(data, [len]), device);
        let reduced = collective::all_reduce::<B>(
            self.id(),
            tensor.into_primitive().tensor(),
            ReduceOperation::Mean,
        )
        .map_err(|e| self.failed(format!("averaging {} values: {e:?}", values.len())))?;
        let out = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(reduced)).into_data();
        let out: Vec<f32> = out
            .to_vec()
            .map_err(|e| self.failed(format!("reading averaged values: {e:?}")))?;
        Ok(out.into_iter().take(values.len()).map(f64::from).collect())
    }

    /// True on every peer when every peer says `ok`; false on every peer otherwise. Used after
    /// the lead writes files, so that a failed write stops all peers instead of leaving the
    /// others waiting in the next all-reduce.
    pub fn all_ok<B: Backend>(&self, ok: bool, device: &B::Device) -> Result<bool, ParallelError> {
        let failed = self.mean::<B>(&[if ok { 0.0 } else { 1.0 }], device)?;
        Ok(failed[0] == 0.0)
    }

    /// `result` on every peer when every peer's is Ok; otherwise every peer stops: a peer that
    /// failed returns its own error, the others one saying that `what` failed elsewhere.
    pub fn agree<B: Backend, T, E: From<ParallelError>>(
        &self,
        result: Result<T, E>,
        what: &str,
        device: &B::Device,
    ) -> Result<T, E> {
        if self.all_ok::<B>(result.is_ok(), device)? {
            return result;
        }
        result?;
        Err(ParallelError::Collective {
            peer: self.rank,
            message: format!("{what} failed on another peer; stopping"),
        }
        .into())
    }

    /// Checks that every peer holds the same `value` (e.g. the epoch a checkpoint resumes
    /// from); every peer reaches the same verdict.
    pub fn same_everywhere<B: Backend>(
        &self,
        value: f64,
        what: &str,
        device: &B::Device,
    ) -> Result<(), ParallelError> {
        let m = self.mean::<B>(&[value, value * value], device)?;
        // The variance over peers; zero (to f32 rounding) exactly when all agree.
        let spread = (m[1] - m[0] * m[0]).abs();
        if spread > 1e-6 * m[1].abs().max(1.0) {
            return Err(ParallelError::Disagreement {
                peer: self.rank,
                message: format!(
                    "peers disagree on {what} (this peer: {value}, mean {}); every node needs the same checkpoint folder (a shared filesystem) or none",
                    m[0]
                ),
            });
        }
        Ok(())
    }
}

/// Runs `work` once per local peer, each on its own thread (a single peer runs on this thread),
/// and returns their results in rank order.
pub fn run_peers<R, E>(
    cluster: &Cluster,
    work: impl Fn(&Peer) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    R: Send,
    E: Send + From<ParallelError>,
{
    let peers = cluster.local_peers()?;
    if let [only] = peers.as_slice() {
        return Ok(vec![work(only)?]);
    }
    let results: Vec<Result<R, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = peers
            .iter()
            .map(|peer| {
                let work = &work;
                std::thread::Builder::new()
                    .name(format!("peer-{}", peer.rank))
                    .spawn_scoped(scope, move || work(peer))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(ParallelError::Panicked(what).into())
                }),
                Err(e) => Err(ParallelError::Panicked(format!("could not start: {e}")).into()),
            })
            .collect()
    });
    results.into_iter().collect()
}

/// Gives the module's parameters ids 1, 2, 3… in visiting order. Ids are otherwise random per
/// process, and burn's all-reduce pairs parameters across peers by sorted id: replicas built in
/// different processes must number them alike.
pub fn stable_param_ids<B: Backend, M: Module<B>>(module: M) -> M {
    struct Renumber(u64);
    impl<B: Backend> ModuleMapper<B> for Renumber {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (_, tensor, mapper) = param.consume();
            self.0 += 1;
            Param::from_mapped_value(ParamId::from(self.0), tensor, mapper)
        }
    }
    module.map(&mut Renumber(0))
}

/// Serves burn-collective's global orchestrator on `port` until the process is interrupted
/// (Ctrl-C or SIGTERM). Exactly one process of a multi-machine run does this.
pub fn serve_orchestrator(port: u16) -> Result<(), ParallelError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ParallelError::Nodes(format!("starting the orchestrator: {e}")))?;
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(rank: usize, world: usize) -> Peer {
        Peer {
            rank,
            world,
            device: ComputeDevice::Cpu,
            config: None,
        }
    }

    #[test]
    fn rows_split_every_batch_without_gaps_or_overlaps() {
        for world in 1..5 {
            for n in 0..23 {
                let parts: Vec<Range<usize>> = (0..world).map(|r| peer(r, world).rows(n)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[world - 1].end, n);
                assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
                let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
                // The weighted shard means average to the whole batch's mean (of 0, 1, 4, 9...).
                if n > 0 {
                    let value = |i: usize| (i * i) as f32;
                    let whole = (0..n).map(value).sum::<f32>() / n as f32;
                    let averaged = (0..world)
                        .filter(|&r| !parts[r].is_empty())
                        .map(|r| {
                            let mean =
                                parts[r].clone().map(value).sum::<f32>() / parts[r].len() as f32;
                            peer(r, world).loss_weight(n) * mean
                        })
                        .sum::<f32>()
                        / world as f32;
                    assert!(
                        (averaged - whole).abs() <= 1e-4 * whole.max(1.0),
                        "{n} {world}"
                    );
                }
            }
        }
        assert_eq!(peer(1, 3).rows(10), 4..7);
        assert_eq!(peer(2, 3).rows(10), 7..10);
    }

    #[test]
    fn device_lists_are_parsed_and_bad_ones_named() {
        assert_eq!(
            Cluster::parse_devices("cpu").unwrap(),
            vec![ComputeDevice::Cpu]
        );
        assert_eq!(
            Cluster::parse_devices("cpu, cpu").unwrap(),
            vec![ComputeDevice::Cpu, ComputeDevice::Cpu]
        );
        let err = |s: &str| Cluster::parse_devices(s).unwrap_err().to_string();
        assert!(
            err("cpu,,cpu").contains("empty entry"),
            "{}",
            err("cpu,,cpu")
        );
        assert!(
            err("tpu").contains("\"tpu\" is not a device"),
            "{}",
            err("tpu")
        );
        assert!(err("cpu:1").contains("only cuda takes an index"));
        assert!(err("auto,cpu").contains("not a device"));
        if !cfg!(feature = "cuda") {
            assert!(err("cuda:0,cuda:1").contains("without the `cuda` feature"));
        }
    }

    #[test]
    fn node_settings_are_checked_before_anything_starts() {
        let nodes = |count, rank, node: &str| Nodes {
            count,
            rank,
            global_address: "ws://head:3000".into(),
            node_address: node.into(),
        };
        let single = Cluster::single(ComputeDevice::Cpu);
        let ok = single
            .clone()
            .with_nodes(nodes(2, 1, "ws://me:3001"))
            .unwrap();
        assert_eq!(ok.world(), 2);
        assert!(!ok.is_lead_process());
        assert_eq!(ok.local_peers().unwrap()[0].rank, 1);
        let err = |n: Nodes| single.clone().with_nodes(n).unwrap_err().to_string();
        assert!(err(nodes(2, 2, "ws://me:3001")).contains("ranks are 0 to 1"));
        assert!(err(nodes(1, 0, "ws://me:3001")).contains("at least 2"));
        assert!(err(nodes(2, 0, "me:3001")).contains("not a ws:// address"));
        assert!(err(nodes(2, 0, "ws://me")).contains("no port"));
        assert!(err(nodes(2, 0, "ws://me:99999")).contains("1 to 65535"));
    }
}
