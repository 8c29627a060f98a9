//! The Llama family (`llama`, `qwen2`, SmolLM-style GQA), weight names as HF `LlamaModel` under
//! `model.`: `embed_tokens`, `layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj,
//! post_attention_layernorm, mlp.{gate,up,down}_proj}`, `norm`. RMSNorm, SwiGLU, grouped-query
//! attention and rotary embeddings (HF `rotate_half` convention, `rope_theta`, linear/llama3 scaling).

use crate::cache::KvCache;
use crate::config::{activation_kind, Activation, LlamaConfig, RopeScaling};
use crate::layers::{activate, attention, param, AttnMask, Ctx, Fill, Linear, RmsNorm};
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug)]
struct Layer {
    input_layernorm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    post_attention_layernorm: RmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

/// The Llama trunk: token embeddings, decoder layers and the final RMSNorm.
#[derive(Debug)]
pub struct LlamaModel {
    cfg: LlamaConfig,
    act: Activation,
    pub(crate) embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// `[head_dim / 2]` f32 inverse frequencies.
    inv_freq: Tensor,
}

/// RoPE inverse frequencies exactly as transformers computes them (f32).
pub(crate) fn inv_freq(cfg: &LlamaConfig, device: Device) -> crate::Result<Tensor> {
    let rope = cfg.rope()?;
    let dim = cfg.head_size();
    let exps = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, device)).to_kind(Kind::Float) / dim as f64;
    let inv = Tensor::pow_scalar(rope.theta, &exps).reciprocal();
    Ok(match rope.scaling {
        RopeScaling::None => inv,
        RopeScaling::Linear { factor } => inv / factor,
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            let wavelen = inv.reciprocal() * (2.0 * std::f64::consts::PI);
            let scaled = inv.where_self(&wavelen.le(low_wavelen), &(&inv / factor));
            let smooth = (wavelen.reciprocal() * old - low_freq_factor) / (high_freq_factor - low_freq_factor);
            let smoothed: Tensor = (1.0 - &smooth) * &scaled / factor + &smooth * &scaled;
            let medium = wavelen.ge(high_wavelen).logical_and(&wavelen.le(low_wavelen));
            smoothed.where_self(&medium, &scaled)
        }
    })
}

fn rotate_half(x: &Tensor) -> Tensor {
    let d = *x.size().last().unwrap_or(&0);
    let x1 = x.narrow(-1, 0, d / 2);
    let x2 = x.narrow(-1, d / 2, d / 2);
    Tensor::cat(&[x2.neg(), x1], -1)
}

impl LlamaModel {
    /// Builds the trunk under `p` (normally `vs.root() / "model"`). `qkv_bias` is Qwen2's always-on
    /// q/k/v bias; Llama's `attention_bias` adds biases to all four projections.
    pub fn new(p: &nn::Path, cfg: &LlamaConfig, qkv_bias: bool, load: bool) -> crate::Result<Self> {
        let act = activation_kind(&cfg.hidden_act)?;
        let w = if load { Fill::Empty } else { Fill::Normal(cfg.initializer_range) };
        let (h, hd) = (cfg.hidden_size, cfg.head_size());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let eps = cfg.rms_norm_eps;
        let qkv_b = qkv_bias || cfg.attention_bias;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = p / "layers" / i;
                let a = &l / "self_attn";
                let m = &l / "mlp";
                Layer {
                    input_layernorm: RmsNorm::new(&(&l / "input_layernorm"), h, eps, load),
                    q_proj: Linear::new(&(&a / "q_proj"), h, nh * hd, qkv_b, false, w),
                    k_proj: Linear::new(&(&a / "k_proj"), h, nkv * hd, qkv_b, false, w),
                    v_proj: Linear::new(&(&a / "v_proj"), h, nkv * hd, qkv_b, false, w),
                    o_proj: Linear::new(&(&a / "o_proj"), nh * hd, h, cfg.attention_bias, false, w),
                    post_attention_layernorm: RmsNorm::new(&(&l / "post_attention_layernorm"), h, eps, load),
                    gate_proj: Linear::new(&(&m / "gate_proj"), h, cfg.intermediate_size, cfg.mlp_bias, false, w),
                    up_proj: Linear::new(&(&m / "up_proj"), h, cfg.intermediate_size, cfg.mlp_bias, false, w),
                    down_proj: Linear::new(&(&m / "down_proj"), cfg.intermediate_size, h, cfg.mlp_bias, false, w),
                }
            })
            .collect();
        Ok(LlamaModel {
            cfg: cfg.clone(),
            act,
            embed_tokens: param(&(p / "embed_tokens"), "weight", &[cfg.vocab_size, h], w),
            layers,
            norm: RmsNorm::new(&(p / "norm"), h, eps, load),
            inv_freq: inv_freq(cfg, p.device())?,
        })
    }

    /// Input embedding matrix `[vocab, hidden]`.
    pub fn embeddings(&self) -> &Tensor {
        &self.embed_tokens
    }

    pub(crate) fn linears_mut(&mut self) -> Vec<&mut Linear> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    &mut l.q_proj,
                    &mut l.k_proj,
                    &mut l.v_proj,
                    &mut l.o_proj,
                    &mut l.gate_proj,
                    &mut l.up_proj,
                    &mut l.down_proj,
                ]
            })
            .collect()
    }
    pub(crate) fn linears(&self) -> Vec<&Linear> {
        self.layers
            .iter()
            .flat_map(|l| [&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj])
            .collect()
    }

    /// `(cos, sin)`, each `[B, 1, T, head_dim]` in the activations' kind.
    fn rope(&self, position_ids: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs = position_ids.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    /// Hidden states after the final norm, `[B, T, hidden]`.
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
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.kv_heads(), cfg.head_size());
        let mut x = Tensor::embedding(&self.embed_tokens, input_ids, -1, false, false);
        let (cos, sin) = self.rope(position_ids, x.kind());
        let scale = 1.0 / (hd as f64).sqrt();
        let attn_drop = if ctx.train { cfg.attention_dropout } else { 0.0 };
        for (i, l) in self.layers.iter().enumerate() {
            let hsn = l.input_layernorm.forward(&x);
            let q = l.q_proj.forward(&hsn, ctx).view([b, t, nh, hd]).transpose(1, 2);
            let k = l.k_proj.forward(&hsn, ctx).view([b, t, nkv, hd]).transpose(1, 2);
            let v = l.v_proj.forward(&hsn, ctx).view([b, t, nkv, hd]).transpose(1, 2);
            let q = &q * &cos + rotate_half(&q) * &sin;
            let k = &k * &cos + rotate_half(&k) * &sin;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.update(i, &k, &v),
                None => (k, v),
            };
            let a = attention(&q, &k, &v, mask, scale, attn_drop);
            let a = a.transpose(1, 2).reshape([b, t, nh * hd]);
            x = x + l.o_proj.forward(&a, ctx);
            let hsn = l.post_attention_layernorm.forward(&x);
            let gated = activate(&l.gate_proj.forward(&hsn, ctx), self.act) * l.up_proj.forward(&hsn, ctx);
            x = x + l.down_proj.forward(&gated, ctx);
        }
        self.norm.forward(&x)
    }
}
