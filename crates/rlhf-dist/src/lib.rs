//! `rlhf-dist`: data parallelism across processes, on PyTorch's c10d.
//!
//! [`World`] is the one interface the trainers see: this process's rank among `size` processes,
//! its contiguous share of a batch, bucketed gradient all-reduce, broadcast and barrier. Behind it
//! sits a Gloo process group from libtorch_cpu itself (`ProcessGroupGloo` over a `TCPStore`
//! rendezvous, the same engine as `torch.distributed.init_process_group("gloo")`), reached through
//! a small C++ shim (`src/c10d_shim.cpp`). Why c10d and not NCCL or MPI directly:
//! `docs/distributed.md`.
//!
//! The world comes from the torchrun/SLURM environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`; `SLURM_PROCID`/`SLURM_NTASKS` when those are absent); without it
//! the process is alone and every collective is a no-op, so a single-process run is unchanged bit
//! for bit. A peer that dies makes the others' next collective fail with one error (a closed
//! connection, or the `RLHF_DIST_TIMEOUT_S` timeout, 300 s by default) instead of hanging.

use std::sync::OnceLock;

use tch::Tensor;

#[cfg(not(no_gloo))]
mod gloo;

/// What can go wrong setting up or running a collective.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("distributed launch: {0}")]
    Environment(String),
    #[error("rank {rank} of {size}: {operation} failed: {message} (another rank stopped or is unreachable)")]
    Collective { rank: usize, size: usize, operation: &'static str, message: String },
    #[error(
        "this build has no collective engine: the Gloo headers were missing when rlhf-dist was built \
         (run `cargo xtask setup`, then rebuild)"
    )]
    NoEngine,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Bytes of gradients per all-reduce (PyTorch DDP's default bucket, 25 MiB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// This process's place among the processes of one data-parallel run.
pub struct World {
    rank: usize,
    size: usize,
    local_rank: usize,
    engine: Engine,
}

enum Engine {
    Alone,
    #[cfg(not(no_gloo))]
    Gloo(gloo::Group),
}

/// Where the processes meet: torchrun's variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl Launch {
    /// The launch described by `var` (the process environment in a run), `None` for one process.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let number = |names: &[&str]| -> Result<Option<usize>> {
            let Some((name, value)) = names.iter().find_map(|n| var(n).map(|v| (*n, v))) else { return Ok(None) };
            value.trim().parse().map(Some).map_err(|_| Error::Environment(format!("{name}={value:?} is not a number")))
        };
        let size = number(&["WORLD_SIZE", "SLURM_NTASKS"])?.unwrap_or(1);
        if size <= 1 {
            return Ok(None);
        }
        let rank = number(&["RANK", "SLURM_PROCID"])?
            .ok_or_else(|| Error::Environment(format!("WORLD_SIZE={size} but RANK is not set")))?;
        if rank >= size {
            return Err(Error::Environment(format!("RANK={rank} is not below WORLD_SIZE={size}")));
        }
        let local_rank = number(&["LOCAL_RANK", "SLURM_LOCALID"])?.unwrap_or(rank);
        let master_addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let master_port = match var("MASTER_PORT") {
            Some(port) => {
                port.trim().parse().map_err(|_| Error::Environment(format!("MASTER_PORT={port:?} is not a port")))?
            }
            None => return Err(Error::Environment(format!("WORLD_SIZE={size} but MASTER_PORT is not set"))),
        };
        Ok(Some(Launch { rank, size, local_rank, master_addr, master_port }))
    }
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The process's world, joined on first use from the environment (see the crate doc).
pub fn world() -> Result<&'static World> {
    if let Some(world) = WORLD.get() {
        return Ok(world);
    }
    let world = match Launch::from_vars(|name| std::env::var(name).ok())? {
        None => World::alone(),
        Some(launch) => World::join(&launch)?,
    };
    Ok(WORLD.get_or_init(|| world))
}

fn timeout_ms() -> Result<u64> {
    match std::env::var("RLHF_DIST_TIMEOUT_S") {
        Err(_) => Ok(300_000),
        Ok(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| *v > 0.0)
            .map(|v| (v * 1000.0) as u64)
            .ok_or_else(|| Error::Environment(format!("RLHF_DIST_TIMEOUT_S={s:?} is not a positive number"))),
    }
}

impl World {
    /// One process: every collective is a no-op.
    pub fn alone() -> World {
        World { rank: 0, size: 1, local_rank: 0, engine: Engine::Alone }
    }

    /// Meets the other processes of `launch` (rank 0 hosts the store) and opens the Gloo group.
    pub fn join(launch: &Launch) -> Result<World> {
        #[cfg(no_gloo)]
        {
            let _ = launch;
            Err(Error::NoEngine)
        }
        #[cfg(not(no_gloo))]
        {
            let group = gloo::Group::new(launch, timeout_ms()?).map_err(|message| Error::Collective {
                rank: launch.rank,
                size: launch.size,
                operation: "joining",
                message,
            })?;
            tracing::info!(rank = launch.rank, size = launch.size, "joined the process group");
            Ok(World {
                rank: launch.rank,
                size: launch.size,
                local_rank: launch.local_rank,
                engine: Engine::Gloo(group),
            })
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn size(&self) -> usize {
        self.size
    }
    /// The rank among this machine's processes (which GPU to take).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }
    /// Whether this process writes the run's files (rank 0); the others only compute.
    pub fn is_writer(&self) -> bool {
        self.rank == 0
    }
    pub fn is_distributed(&self) -> bool {
        self.size > 1
    }

    /// This rank's contiguous share of `batch`: sizes differ by at most one, rank 0's first.
    pub fn share<'a>(&self, batch: &'a [usize]) -> &'a [usize] {
        let (n, w, r) = (batch.len(), self.size, self.rank);
        let start = r * (n / w) + r.min(n % w);
        let len = n / w + usize::from(r < n % w);
        &batch[start..start + len]
    }

    /// This rank's part of one optimizer step's micro-batches: whole micro-batches when their
    /// count divides among the ranks (rank r the r-th block: the same micro-batches, and so the
    /// same float sums, as one process accumulating them), else its [`World::share`] of each.
    pub fn share_step<'a>(&self, micro: &[&'a [usize]]) -> Vec<&'a [usize]> {
        if micro.len().is_multiple_of(self.size) {
            let per_rank = micro.len() / self.size;
            micro[self.rank * per_rank..(self.rank + 1) * per_rank].to_vec()
        } else {
            micro.iter().map(|batch| self.share(batch)).collect()
        }
    }

    fn failed(&self, operation: &'static str) -> impl FnOnce(String) -> Error {
        let (rank, size) = (self.rank, self.size);
        move |message| Error::Collective { rank, size, operation, message }
    }

    /// Sums `tensor` over the ranks, in place on every rank (identical bits everywhere).
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        match &self.engine {
            Engine::Alone => Ok(()),
            #[cfg(not(no_gloo))]
            Engine::Gloo(group) => group.all_reduce_sum(tensor).map_err(self.failed("all-reduce")),
        }
    }

    /// Replaces `tensor` on every rank with rank `root`'s.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<()> {
        match &self.engine {
            Engine::Alone => Ok(()),
            #[cfg(not(no_gloo))]
            Engine::Gloo(group) => group.broadcast(tensor, root).map_err(self.failed("broadcast")),
        }
    }

    /// Waits until every rank has reached this point.
    pub fn barrier(&self) -> Result<()> {
        match &self.engine {
            Engine::Alone => Ok(()),
            #[cfg(not(no_gloo))]
            Engine::Gloo(group) => group.barrier().map_err(self.failed("barrier")),
        }
    }

    /// Sums the gradients of `params` over the ranks (the trainers' losses are normalised by the
    /// whole step's batch, so the sum is the one-process gradient): flattened into buckets of at most
    /// [`BUCKET_BYTES`] per dtype and device, one all-reduce per bucket, copied back. A parameter
    /// this rank's share never reached gets a zero gradient first, so every rank reduces the same
    /// buckets.
    pub fn all_reduce_gradients(&self, params: &[Tensor]) -> Result<()> {
        if !self.is_distributed() {
            return Ok(());
        }
        #[cfg(not(no_gloo))]
        for param in params {
            gloo::ensure_grad(param).map_err(self.failed("gradient setup"))?;
        }
        let grads: Vec<Tensor> = params.iter().map(Tensor::grad).filter(Tensor::defined).collect();
        tch::no_grad(|| {
            for bucket in buckets(&grads) {
                let flat = Tensor::cat(&bucket.iter().map(|g| g.reshape(-1)).collect::<Vec<_>>(), 0);
                self.all_reduce_sum(&flat)?;
                let mut offset = 0;
                for grad in bucket {
                    let n = grad.numel() as i64;
                    grad.shallow_clone().copy_(&flat.narrow(0, offset, n).view_as(grad));
                    offset += n;
                }
            }
            Ok(())
        })
    }

    /// Sums `values` over the ranks (as f64): step losses, counts, metric sums.
    pub fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
        if !self.is_distributed() || values.is_empty() {
            return Ok(());
        }
        let tensor = Tensor::from_slice(values);
        self.all_reduce_sum(&tensor)?;
        let summed: Vec<f64> =
            Vec::try_from(&tensor).map_err(|e: tch::TchError| self.failed("reading a sum")(e.to_string()))?;
        values.copy_from_slice(&summed);
        Ok(())
    }
}

/// `tensors` grouped by (dtype, device) in order, each group cut into buckets of at most
/// [`BUCKET_BYTES`] (a larger tensor is a bucket of its own).
fn buckets(tensors: &[Tensor]) -> Vec<Vec<&Tensor>> {
    let mut out: Vec<(tch::Kind, tch::Device, usize, Vec<&Tensor>)> = Vec::new();
    for tensor in tensors {
        let (kind, device) = (tensor.kind(), tensor.device());
        let bytes = tensor.numel() * kind.elt_size_in_bytes();
        match out.iter_mut().rev().find(|(k, d, ..)| *k == kind && *d == device) {
            Some((_, _, used, bucket)) if *used + bytes <= BUCKET_BYTES => {
                *used += bytes;
                bucket.push(tensor);
            }
            _ => out.push((kind, device, bytes, vec![tensor])),
        }
    }
    out.into_iter().map(|(.., bucket)| bucket).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_torchrun_environment_describes_the_launch() {
        assert_eq!(Launch::from_vars(vars(&[])).unwrap(), None);
        assert_eq!(Launch::from_vars(vars(&[("WORLD_SIZE", "1"), ("RANK", "0")])).unwrap(), None);
        let env = [("WORLD_SIZE", "4"), ("RANK", "2"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29500")];
        let launch = Launch::from_vars(vars(&env)).unwrap().unwrap();
        assert_eq!(launch, Launch { rank: 2, size: 4, local_rank: 2, master_addr: "node0".into(), master_port: 29500 });
        let slurm = [("SLURM_NTASKS", "2"), ("SLURM_PROCID", "1"), ("SLURM_LOCALID", "0"), ("MASTER_PORT", "1")];
        assert_eq!(Launch::from_vars(vars(&slurm)).unwrap().unwrap().local_rank, 0);
        for (bad, says) in [
            (&[("WORLD_SIZE", "2"), ("MASTER_PORT", "1")][..], "RANK is not set"),
            (&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_PORT", "1")], "not below WORLD_SIZE=2"),
            (&[("WORLD_SIZE", "two")], "\"two\" is not a number"),
            (&[("WORLD_SIZE", "2"), ("RANK", "0")], "MASTER_PORT is not set"),
        ] {
            let err = Launch::from_vars(vars(bad)).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn shares_cover_the_batch_once_in_order() {
        let batch: Vec<usize> = (10..17).collect();
        for size in 1..=9 {
            let shares: Vec<&[usize]> = (0..size)
                .map(|rank| World { rank, size, local_rank: rank, engine: Engine::Alone }.share(&batch))
                .collect();
            assert_eq!(shares.concat(), batch, "size {size}");
            let lens: Vec<usize> = shares.iter().map(|s| s.len()).collect();
            assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1, "{lens:?}");
        }
    }

    #[test]
    fn whole_micro_batches_go_to_ranks_when_they_divide() {
        let rank = |rank| World { rank, size: 2, local_rank: rank, engine: Engine::Alone };
        let four: [&[usize]; 4] = [&[0, 1], &[2, 3], &[4, 5], &[6]];
        assert_eq!(rank(1).share_step(&four), vec![&[4, 5][..], &[6]]);
        let three: [&[usize]; 3] = [&[0, 1], &[2, 3], &[4]];
        assert_eq!(rank(1).share_step(&three), vec![&[1][..], &[3], &[]]);
    }

    #[test]
    fn buckets_keep_order_and_split_by_size_and_dtype() {
        let big = (BUCKET_BYTES / 4 / 2) as i64;
        let tensors = [
            Tensor::zeros([big], (tch::Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([big], (tch::Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([3], (tch::Kind::Double, tch::Device::Cpu)),
            Tensor::zeros([big], (tch::Kind::Float, tch::Device::Cpu)),
        ];
        let sizes: Vec<Vec<i64>> =
            buckets(&tensors).iter().map(|b| b.iter().map(|t| t.numel() as i64).collect()).collect();
        assert_eq!(sizes, vec![vec![big, big], vec![3], vec![big]]);
    }

    #[test]
    fn alone_every_collective_is_a_no_op() {
        let world = World::alone();
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        world.all_reduce_sum(&t).unwrap();
        world.barrier().unwrap();
        let mut v = [3.0, 4.0];
        world.sum_f64(&mut v).unwrap();
        assert_eq!((Vec::<f32>::try_from(&t).unwrap(), v), (vec![1.0, 2.0], [3.0, 4.0]));
        assert_eq!(world.share(&[1, 2, 3]), &[1, 2, 3]);
        let micro: [&[usize]; 2] = [&[1, 2], &[3]];
        assert_eq!(world.share_step(&micro), micro.to_vec());
    }
}
