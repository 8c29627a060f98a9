//! GPT-2 (`model_type: "gpt2"`), weight names as HF `GPT2Model` under `transformer.`:
//! `wte`, `wpe`, `h.{i}.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `ln_f`.
//! The projections are HF `Conv1D` (weights `[in, out]`).

use crate::cache::KvCache;
use crate::config::{activation_kind, Activation, Gpt2Config};
use crate::layers::{activate, attention, dropout, param, AttnMask, Ctx, Fill, LayerNorm, Linear};
use tch::{nn, Tensor};

#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
    scale: f64,
}

/// The GPT-2 trunk: embeddings, blocks and the final LayerNorm.
#[derive(Debug)]
pub struct Gpt2Model {
    cfg: Gpt2Config,
    act: Activation,
    pub(crate) wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

impl Gpt2Model {
    /// Builds the trunk under `p` (normally `vs.root() / "transformer"`). `load` leaves the weights
    /// uninitialized for a checkpoint to fill; otherwise they follow HF's init (Normal(0, 0.02)).
    pub fn new(p: &nn::Path, cfg: &Gpt2Config, load: bool) -> crate::Result<Self> {
        let act = activation_kind(&cfg.activation_function)?;
        let w = if load { Fill::Empty } else { Fill::Normal(cfg.initializer_range) };
        let (h, eps) = (cfg.n_embd, cfg.layer_norm_epsilon);
        let head_dim = (h / cfg.n_head) as f64;
        // HF initializes c_proj weights with std / sqrt(2 * n_layer).
        let proj_w =
            if load { Fill::Empty } else { Fill::Normal(cfg.initializer_range / (2.0 * cfg.n_layer as f64).sqrt()) };
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let b = p / "h" / i;
                let mut scale = if cfg.scale_attn_weights { 1.0 / head_dim.sqrt() } else { 1.0 };
                if cfg.scale_attn_by_inverse_layer_idx {
                    scale /= (i + 1) as f64;
                }
                Block {
                    ln_1: LayerNorm::new(&(&b / "ln_1"), h, eps, load),
                    c_attn: Linear::new(&(&b / "attn" / "c_attn"), h, 3 * h, true, true, w),
                    attn_proj: Linear::new(&(&b / "attn" / "c_proj"), h, h, true, true, proj_w),
                    ln_2: LayerNorm::new(&(&b / "ln_2"), h, eps, load),
                    c_fc: Linear::new(&(&b / "mlp" / "c_fc"), h, cfg.inner_size(), true, true, w),
                    mlp_proj: Linear::new(&(&b / "mlp" / "c_proj"), cfg.inner_size(), h, true, true, proj_w),
                    scale,
                }
            })
            .collect();
        Ok(Gpt2Model {
            cfg: cfg.clone(),
            act,
            wte: param(&(p / "wte"), "weight", &[cfg.vocab_size, h], w),
            wpe: param(&(p / "wpe"), "weight", &[cfg.n_positions, h], w),
            blocks,
            ln_f: LayerNorm::new(&(p / "ln_f"), h, eps, load),
        })
    }

    /// Input embedding matrix `[vocab, n_embd]`.
    pub fn embeddings(&self) -> &Tensor {
        &self.wte
    }

    pub(crate) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        self.blocks.iter_mut().flat_map(|b| [&mut b.c_attn, &mut b.attn_proj, &mut b.c_fc, &mut b.mlp_proj]).collect()
    }
    pub(crate) fn linears(&self) -> Vec<&Linear> {
        self.blocks.iter().flat_map(|b| [&b.c_attn, &b.attn_proj, &b.c_fc, &b.mlp_proj]).collect()
    }

    /// Hidden states after `ln_f`, `[B, T, n_embd]`.
    // `x = x + ...` (not `+=`): an in-place add would clobber tensors autograd saved for backward.
    #[allow(clippy::assign_op_pattern)]
    pub(crate) fn forward(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        mask: &AttnMask,
        mut cache: Option<&mut KvCache>,
        ctx: Ctx,
    ) -> Tensor {
        let cfg = &self.cfg;
        let (b, t) = (input_ids.size()[0], input_ids.size()[1]);
        let (nh, hd) = (cfg.n_head, cfg.n_embd / cfg.n_head);
        let tok = Tensor::embedding(&self.wte, input_ids, -1, false, false);
        let pos = Tensor::embedding(&self.wpe, position_ids, -1, false, false);
        let mut x = dropout(tok + pos, cfg.embd_pdrop, ctx);
        let attn_drop = if ctx.train { cfg.attn_pdrop } else { 0.0 };
        for (i, blk) in self.blocks.iter().enumerate() {
            let hsn = blk.ln_1.forward(&x);
            let qkv = blk.c_attn.forward(&hsn, ctx);
            let parts = qkv.split(cfg.n_embd, -1);
            let heads = |z: &Tensor| z.view([b, t, nh, hd]).transpose(1, 2);
            let (q, k, v) = (heads(&parts[0]), heads(&parts[1]), heads(&parts[2]));
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.update(i, &k, &v),
                None => (k, v),
            };
            let a = attention(&q, &k, &v, mask, blk.scale, attn_drop);
            let a = a.transpose(1, 2).reshape([b, t, cfg.n_embd]);
            let a = dropout(blk.attn_proj.forward(&a, ctx), cfg.resid_pdrop, ctx);
            x = x + a;
            let hsn = blk.ln_2.forward(&x);
            let m = blk.mlp_proj.forward(&activate(&blk.c_fc.forward(&hsn, ctx), self.act), ctx);
            x = x + dropout(m, cfg.resid_pdrop, ctx);
        }
        self.ln_f.forward(&x)
    }
}
