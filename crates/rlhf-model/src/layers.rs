//! Building blocks shared by the architectures: parameters, linear layers (with an optional LoRA
//! adapter), norms, activations, attention masks and scaled-dot-product attention.

use crate::config::Activation;
use crate::lora::LoraAdapter;
use tch::{nn, Kind, Tensor};

/// Per-forward switches threaded through the layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ctx {
    /// Training mode: dropout active.
    pub train: bool,
    /// LoRA adapters take part in the forward pass.
    pub lora: bool,
}

/// How a freshly built parameter is filled.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fill {
    /// Uninitialized (the weights are about to be loaded).
    Empty,
    Zeros,
    Ones,
    /// Normal(0, std), HF's `initializer_range` init.
    Normal(f64),
}

/// Creates a trainable parameter named `name` under `p` in the var store's kind and device.
pub(crate) fn param(p: &nn::Path, name: &str, dims: &[i64], fill: Fill) -> Tensor {
    let opts = (p.kind(), p.device());
    let t = match fill {
        Fill::Empty => Tensor::empty(dims, opts),
        Fill::Zeros => Tensor::zeros(dims, opts),
        Fill::Ones => Tensor::ones(dims, opts),
        Fill::Normal(std) => (Tensor::randn(dims, (Kind::Float, p.device())) * std).to_kind(p.kind()),
    };
    p.add(name, t, true)
}

/// A dense layer `y = x W^T + b` (HF `nn.Linear`, weight `[out, in]`) or, for GPT-2's `Conv1D`,
/// `y = x W + b` (weight `[in, out]`). May carry a LoRA adapter.
#[derive(Debug)]
pub struct Linear {
    /// Full HF module path, e.g. `model.layers.0.self_attn.q_proj`.
    pub(crate) name: String,
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
    /// GPT-2 `Conv1D` layout (`[in, out]`).
    pub(crate) conv1d: bool,
    pub(crate) lora: Option<LoraAdapter>,
}

impl Linear {
    /// Builds `p/weight` (+ `p/bias`) with `weight_fill` for the weight and zeros for the bias.
    pub(crate) fn new(p: &nn::Path, in_f: i64, out_f: i64, bias: bool, conv1d: bool, fill: Fill) -> Linear {
        let dims = if conv1d { [in_f, out_f] } else { [out_f, in_f] };
        let bias_fill = if matches!(fill, Fill::Empty) { Fill::Empty } else { Fill::Zeros };
        Linear {
            name: p.components().collect::<Vec<_>>().join("."),
            weight: param(p, "weight", &dims, fill),
            bias: bias.then(|| param(p, "bias", &[out_f], bias_fill)),
            conv1d,
            lora: None,
        }
    }

    /// A linear layer over an existing weight (tied `lm_head`).
    pub(crate) fn tied(name: &str, weight: &Tensor) -> Linear {
        Linear { name: name.into(), weight: weight.shallow_clone(), bias: None, conv1d: false, lora: None }
    }

    /// Input features.
    pub fn in_features(&self) -> i64 {
        self.weight.size()[if self.conv1d { 0 } else { 1 }]
    }
    /// Output features.
    pub fn out_features(&self) -> i64 {
        self.weight.size()[if self.conv1d { 1 } else { 0 }]
    }
    /// HF module path.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn forward(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        let y = if self.conv1d {
            let mut shape = x.size();
            let in_f = *shape.last().unwrap_or(&0);
            let x2 = x.reshape([-1, in_f]);
            let y = match &self.bias {
                Some(b) => b.addmm(&x2, &self.weight),
                None => x2.matmul(&self.weight),
            };
            *shape.last_mut().unwrap() = self.out_features();
            y.reshape(shape.as_slice())
        } else {
            x.linear(&self.weight, self.bias.as_ref())
        };
        match &self.lora {
            Some(lora) if ctx.lora => y + lora.forward(x, ctx.train),
            _ => y,
        }
    }

    /// The weight with any LoRA delta folded in (HF layout), as saved in a merged checkpoint.
    pub(crate) fn merged_weight(&self) -> Tensor {
        match &self.lora {
            Some(lora) => {
                let delta = lora.delta_weight(); // [out, in]
                let delta = if self.conv1d { delta.tr() } else { delta };
                (&self.weight + delta.to_kind(self.weight.kind())).detach()
            }
            None => self.weight.detach(),
        }
    }
}

/// LayerNorm with affine weight and bias (GPT-2).
#[derive(Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(p: &nn::Path, size: i64, eps: f64, load: bool) -> Self {
        let (w, b) = if load { (Fill::Empty, Fill::Empty) } else { (Fill::Ones, Fill::Zeros) };
        LayerNorm { weight: param(p, "weight", &[size], w), bias: param(p, "bias", &[size], b), eps }
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let n = *x.size().last().unwrap_or(&0);
        x.layer_norm([n], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// RMSNorm as in HF Llama: normalize in f32, cast back, then scale.
#[derive(Debug)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub(crate) fn new(p: &nn::Path, size: i64, eps: f64, load: bool) -> Self {
        let fill = if load { Fill::Empty } else { Fill::Ones };
        RmsNorm { weight: param(p, "weight", &[size], fill), eps }
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = xf * (var + self.eps).rsqrt();
        &self.weight * normed.to_kind(kind)
    }
}

pub(crate) fn activate(x: &Tensor, act: Activation) -> Tensor {
    match act {
        Activation::GeluTanh => x.gelu("tanh"),
        Activation::Gelu => x.gelu("none"),
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
    }
}

pub(crate) fn dropout(x: Tensor, p: f64, ctx: Ctx) -> Tensor {
    if ctx.train && p > 0.0 {
        x.dropout(p, true)
    } else {
        x
    }
}

/// The attention pattern of one forward call.
#[derive(Debug)]
pub(crate) enum AttnMask {
    /// No masking at all (a single query over an unpadded cache).
    None,
    /// Plain causal attention, queries aligned with keys (no cache, no padding).
    Causal,
    /// Boolean `[B or 1, 1, T, S]`, true = may attend.
    Mask(Tensor),
}

impl AttnMask {
    /// Builds the mask for `t` new queries after `past` cached positions. `key_mask` is the
    /// `[B, past + t]` padding mask (1 = real token) or `None` when nothing is padded. Every query
    /// may attend to itself, so rows of padding never see an empty set (no NaN).
    pub(crate) fn build(key_mask: Option<&Tensor>, past: i64, t: i64, device: tch::Device) -> AttnMask {
        let s = past + t;
        let causal_part = || {
            let q = Tensor::arange_start(past, s, (Kind::Int64, device)).unsqueeze(1);
            let k = Tensor::arange(s, (Kind::Int64, device)).unsqueeze(0);
            (k.le_tensor(&q), k.eq_tensor(&q))
        };
        match key_mask {
            None if t == 1 => AttnMask::None,
            None if past == 0 => AttnMask::Causal,
            None => AttnMask::Mask(causal_part().0.view([1, 1, t, s])),
            Some(m) => {
                let b = m.size()[0];
                let valid = m.to_kind(Kind::Bool).view([b, 1, 1, s]);
                let (causal, diag) = causal_part();
                let allowed = valid.logical_and(&causal.view([1, 1, t, s])).logical_or(&diag.view([1, 1, t, s]));
                AttnMask::Mask(allowed)
            }
        }
    }
}

/// Scaled-dot-product attention over `q [B,H,T,D]`, `k`/`v [B,Hkv,S,D]` (grouped-query when
/// `Hkv < H`), returning `[B,H,T,D]`.
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, scale: f64, dropout_p: f64) -> Tensor {
    let qs = q.size();
    let (b, h, t, d) = (qs[0], qs[1], qs[2], qs[3]);
    let hkv = k.size()[1];
    if h != hkv && t == 1 && !matches!(mask, AttnMask::Causal) {
        // Decode step: fold each query group into the "time" axis of its kv head, so the cache is
        // attended in place instead of being copied `h / hkv` times. The single query sees the
        // same keys for all heads of the group, so the result is identical.
        let qg = q.reshape([b, hkv, h / hkv, d]);
        let out = match mask {
            AttnMask::Mask(m) => {
                Tensor::scaled_dot_product_attention(&qg, k, v, Some(m), dropout_p, false, scale, false)
            }
            _ => Tensor::scaled_dot_product_attention::<Tensor>(&qg, k, v, None, dropout_p, false, scale, false),
        };
        return out.reshape([b, h, 1, d]);
    }
    let (k, v) =
        if h != hkv { (repeat_kv(k, h / hkv), repeat_kv(v, h / hkv)) } else { (k.shallow_clone(), v.shallow_clone()) };
    match mask {
        AttnMask::None => {
            Tensor::scaled_dot_product_attention::<Tensor>(q, &k, &v, None, dropout_p, false, scale, false)
        }
        AttnMask::Causal => {
            Tensor::scaled_dot_product_attention::<Tensor>(q, &k, &v, None, dropout_p, true, scale, false)
        }
        AttnMask::Mask(m) => Tensor::scaled_dot_product_attention(q, &k, &v, Some(m), dropout_p, false, scale, false),
    }
}

/// `[B, Hkv, S, D]` -> `[B, Hkv * n_rep, S, D]`, each kv head repeated for its query group.
pub(crate) fn repeat_kv(x: &Tensor, n_rep: i64) -> Tensor {
    let s = x.size();
    x.unsqueeze(2).expand([s[0], s[1], n_rep, s[2], s[3]], false).reshape([s[0], s[1] * n_rep, s[2], s[3]])
}

/// Position ids from a padding mask, as transformers' `generate` derives them:
/// `cumsum(mask) - 1`, with padding positions set to 0.
pub fn position_ids_from_mask(attention_mask: &Tensor) -> Tensor {
    let m = attention_mask.to_kind(Kind::Int64);
    let pos = m.cumsum(-1, Kind::Int64) - 1;
    pos.masked_fill(&m.eq(0), 0)
}
