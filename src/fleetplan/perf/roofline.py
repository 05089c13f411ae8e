"""Roofline time of one engine step, and the prefill / decode figures built on it.

A step's time is the sum of its parts, each bounded by the slower of compute and memory traffic:

  t = max(linear FLOPs / achievable FLOP/s, weight bytes / achievable bytes/s)     (GEMMs)
    + max(attention FLOPs / achievable FLOP/s, KV bytes / achievable bytes/s)      (attention)
    + recurrent state bytes / achievable bytes/s                                    (linear mixers)
    + collectives (TP all-reduce, EP all-to-all, PP send/recv)
    + fixed step overhead + per-layer overhead x layers + per-sequence overhead,

less the share `overhead_overlap` of the smaller of the GPU work and the fixed costs (an eager
host dispatching ahead of the GPU hides one behind the other; 0 for CUDA-graph engines).

- Linear FLOPs = 2 x active non-embedding params x tokens + 2 x hidden x vocab per sampled token.
- MoE weight bytes: the dense part plus the experts the step touches; T tokens choosing k of E
  experts touch E x (1 - (1 - k/E)^T) experts per layer in expectation (uniform routing).
- Decode attention reads KV at `bandwidth x kv_read` of peak HBM bandwidth, moving
  1 + gqa_expansion x (query heads / KV heads) times the KV bytes (0 for GQA-aware kernels).
- Unfused elementwise work: `activation_passes` x (hidden + FFN width) x 2 bytes per token and
  layer at `bandwidth` (0 for engines that fuse it).
- Attention FLOPs per query-key pair per layer = 2 x heads x (qk_dim + v_dim); MLA decode uses the
  absorbed form (qk_dim = kv_lora_rank + rope dim, v_dim = kv_lora_rank).
- Linear-attention and Mamba-2 layers (`linear_layers`) keep a fixed state per sequence
  (`linear_state_bytes_per_layer`: conv state + recurrent state) that every step reads and
  writes back once for each sequence it runs (the recurrent update kernels load the state and
  store the new one), sharded by heads over TP: 2 x layers x state bytes / TP per sequence at
  `bandwidth`. Its own kernels, so it adds to the attention time rather than overlapping it.
- All-reduce (ring) = 2 (TP-1)/TP x bytes / achievable link bytes/s + latency, two per layer.
- Pipeline parallelism: one batch passes the stages in turn, so a step's latency is the sum of
  the stages' (= the whole model's work split TP ways) plus PP-1 activation transfers.

With no prefill in the batch the step time is affine in the decode context tokens (plus a kink
where sliding windows fill), so a run of decode steps has a closed-form total: the simulator
skips over decode steps without iterating them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetplan.perf.deployment import Deployment
from fleetplan.perf.memory import embedding_params, kv_bytes_per_token_per_gpu
from fleetplan.perf.params import active_param_count, param_count
from fleetplan.perf.step import StepBatch

__all__ = ["RooflineStepModel", "StepBreakdown"]

ACT_BYTES = 2.0  # bytes per activation element exchanged by collectives (bf16)


@dataclass(frozen=True, slots=True)
class StepBreakdown:
    """Seconds spent by part of one step, and what bounds the GEMMs."""

    linear_s: float
    linear_bound: str  # "compute" or "bandwidth"
    attention_s: float
    attention_bound: str
    comm_s: float
    overhead_s: float
    #: reading and writing the recurrent state of linear-attention / Mamba-2 layers
    state_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.linear_s + self.attention_s + self.state_s + self.comm_s + self.overhead_s


@dataclass(frozen=True, slots=True)
class _Coeffs:
    """GPU work g(c) = const + full_per_ctx * c + sliding_per_ctx * min(c, sliding_cap) for
    decode context tokens c (prefill parts are folded into const); the step takes
    g + over - overlap * min(g, over)."""

    const: float
    full_per_ctx: float
    sliding_per_ctx: float
    sliding_cap: float
    over: float = 0.0
    overlap: float = 0.0

    def gpu(self, c: float) -> float:
        return self.const + self.full_per_ctx * c + self.sliding_per_ctx * min(c, self.sliding_cap)

    def gpu_run(self, seqs: float, c0: float, n: int) -> float:
        """Sum of g over n decode steps from context c0, each adding `seqs` tokens."""
        if n <= 0:
            return 0.0
        sum_ctx = n * c0 + seqs * n * (n - 1) / 2.0
        total = n * self.const + self.full_per_ctx * sum_ctx
        if self.sliding_per_ctx:
            below = min(n, max(0, math.ceil((self.sliding_cap - c0) / seqs)))
            sum_below = below * c0 + seqs * below * (below - 1) / 2.0
            total += self.sliding_per_ctx * (sum_below + (n - below) * self.sliding_cap)
        return total


class RooflineStepModel:
    """The analytic step-time model of a deployment (implements `StepTimeModel`)."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        m, g, eff = dep.model, dep.gpu, dep.efficiency
        a = m.attention
        self.peak_flops = g.flops_per_s[dep.quant.compute_dtype].value
        self.attn_flops = g.flops_per_s["bf16"].value * eff.attention
        self.bw = g.hbm_bytes_per_s.value * eff.bandwidth
        # Decode attention's KV reads.
        self.kv_bw = self.bw * eff.kv_read
        self.overlap = min(max(eff.overhead_overlap, 0.0), 1.0)
        ffn = (m.moe.expert_intermediate_size * m.moe.experts_per_token if m.moe
               else m.intermediate_size)
        # seconds per token of unfused elementwise passes (norms, rotary, activation, residual)
        self.elem_per_token = (eff.activation_passes * m.num_layers * (m.hidden_size + ffn)
                               * ACT_BYTES / (dep.tp * self.bw))
        self.link = g.interconnect.bytes_per_s.value * eff.comm
        so = g.interconnect.scale_out_bytes_per_s
        # Scale-out (NIC) bandwidth per GPU; only layouts spanning domains use it.
        self.nic = so.value * eff.comm if so is not None else self.link
        self.domain = g.interconnect.domain_gpus
        # Latency of a collective crossing domains, as NIC bytes (so it scales with `comm`,
        # like the bandwidth term it joins).
        lat = g.interconnect.scale_out_latency_s
        self.nic_lat_bytes = lat.value * so.value if lat is not None and so is not None else 0.0
        emb = embedding_params(m)
        self.active_linear_params = active_param_count(m) - emb
        self.lm_head_flops = 2.0 * m.hidden_size * m.vocab_size
        wb = dep.quant.weight_bytes
        self.expert_params = 0.0
        self.moe_layers = 0
        if m.moe:
            ffn_mats = 3 if m.ffn_kind == "gated" else 2
            width = m.moe.latent_size or m.hidden_size  # LatentMoE experts work in the latent
            self.expert_params = ffn_mats * width * m.moe.expert_intermediate_size
            self.moe_layers = m.moe_layer_count
        expert_total = self.expert_params * self.moe_layers * (m.moe.num_experts if m.moe else 0)
        self.expert_active_params = self.expert_params * self.moe_layers * (
            m.moe.experts_per_token if m.moe else 0
        )
        dense = param_count(m) - emb - expert_total
        # Bytes read per step: dense weights + LM head (input embedding rows are gathered).
        self.dense_weight_bytes = dense * wb + m.vocab_size * m.hidden_size * 2.0
        # Attention: per pair per layer FLOPs (prefill and decode forms), heads per GPU.
        heads = a.num_heads
        if a.kind == "mla":
            assert a.kv_lora_rank is not None and a.qk_rope_head_dim is not None
            qk = (a.qk_nope_head_dim or a.head_dim) + a.qk_rope_head_dim
            v = a.v_head_dim or a.head_dim
            self.prefill_pair_flops = 2.0 * heads * (qk + v)
            self.decode_pair_flops = 2.0 * heads * (2 * a.kv_lora_rank + a.qk_rope_head_dim)
        else:
            v = a.v_head_dim or a.head_dim
            self.prefill_pair_flops = self.decode_pair_flops = 2.0 * heads * (a.head_dim + v)
        # decode KV traffic per KV byte (attention that expands KV heads to the query heads)
        groups = heads / a.num_kv_heads if a.kind != "mla" and a.num_kv_heads else 1.0
        self.kv_traffic = 1.0 + eff.gqa_expansion * groups
        self.kv_token_bytes_stage = kv_bytes_per_token_per_gpu(dep)  # per GPU, per PP stage
        attn_layers = a.full_layers + a.sliding_layers
        self.full_frac = a.full_layers / attn_layers if attn_layers else 0.0
        self.window = a.sliding_window or 0
        # state bytes each sequence of a step reads and writes back, per GPU
        self.state_rw_bytes_per_seq = (2.0 * a.linear_layers
                                       * (a.linear_state_bytes_per_layer or 0) / dep.tp)
        self._precompute()

    def _precompute(self) -> None:
        """Constants of the step-time formula that depend only on the deployment, so that
        `step_time_s` (the simulator's hot path) is a handful of float operations."""
        dep, eff, m = self.dep, self.dep.efficiency, self.dep.model
        self._pair = {d: self._attn_per_pair_uncached(d) for d in (False, True)}
        dc_flop, dc_byte = self._pair[True]
        per_ctx = max(dc_flop, dc_byte)
        self._full_per_ctx = per_ctx * self.full_frac
        self._slide_per_ctx = per_ctx * (1.0 - self.full_frac)
        self._dc_compute_bound = dc_flop > dc_byte
        self._comm_per_token = self._comm_uncached(1) - self._comm_uncached(0, latency_only=True)
        self._comm_const = self._comm_uncached(0, latency_only=True)
        self._over_const = eff.step_overhead_s + eff.layer_overhead_s * m.num_layers
        tpdp = dep.tp * dep.attention_dp
        self._dp = float(dep.attention_dp)
        self._cmax, self._chalf = eff.compute_max, eff.compute_half_tokens
        self._lin_flops_per_token = 2.0 * self.active_linear_params
        self._per_flop = 1.0 / (tpdp * self.peak_flops)
        self._moe_extra_per_token = 0.0
        if self.moe_layers and eff.moe_compute != 1.0:
            self._moe_extra_per_token = (
                2.0 * self.expert_active_params * self._per_flop * (1.0 / eff.moe_compute - 1.0)
            )
        # dense weights are read once per TP group (replicated on DP ranks)
        self._dense_read_s = self.dense_weight_bytes / dep.tp / self.bw
        self._moe_touch_s, self._moe_keep = 0.0, 1.0
        if m.moe:
            e, k = m.moe.num_experts, m.moe.experts_per_token
            self._moe_keep = 1.0 - k / e
            self._moe_touch_s = (
                self.moe_layers * e * self.expert_params * dep.quant.weight_bytes / tpdp / self.bw
            )
        self._over_per_seq = eff.seq_overhead_s / dep.attention_dp
        # sequences are split over the DP ranks, each with its own states
        self._state_per_seq = self.state_rw_bytes_per_seq / dep.attention_dp / self.bw

    # ---- parts -------------------------------------------------------------------------
    def _linear(self, tokens: int, sampled: int) -> tuple[float, str]:
        """GEMM time of a step: the slower of FLOPs at the efficiency for the tokens per GPU
        rank and the weight bytes the step reads (MoE: only the experts it touches)."""
        if tokens <= 0:
            return 0.0, "bandwidth"
        # FLOPs per GPU: every GEMM's work is spread over all tp x attention_dp GPUs (dense
        # layers by sequences across DP ranks, experts by expert sharding).
        t = max(tokens / self._dp, 1.0)
        eff_c = self._cmax * t / (t + self._chalf)
        flops = self._lin_flops_per_token * tokens + self.lm_head_flops * sampled
        # Expert GEMMs see tokens x k / E rows each: `moe_compute` scales their efficiency.
        t_c = flops * self._per_flop / eff_c + self._moe_extra_per_token * tokens / eff_c
        t_m = self._dense_read_s
        if self._moe_touch_s:
            # T tokens choosing k of E experts touch E (1 - (1 - k/E)^T) experts per layer
            t_m += self._moe_touch_s * (1.0 - self._moe_keep**tokens)
        return (t_c, "compute") if t_c >= t_m else (t_m, "bandwidth")

    def _attn_per_pair(self, decode: bool) -> tuple[float, float]:
        """(FLOP seconds, byte seconds) per query-key pair summed over the model's layers."""
        return self._pair[decode]

    def _attn_per_pair_uncached(self, decode: bool) -> tuple[float, float]:
        dep = self.dep
        a = dep.model.attention
        layers = a.full_layers + a.sliding_layers
        pf = self.decode_pair_flops if decode else self.prefill_pair_flops
        dp = dep.attention_dp  # sequences (and their KV) are split over the DP ranks
        flop_s = pf * layers / dep.tp / dp / self.attn_flops
        kv = self.kv_token_bytes_stage * dep.pp / dp
        byte_s = kv * self.kv_traffic / self.kv_bw if decode else kv / self.bw
        return flop_s, byte_s

    def _comm(self, tokens: int) -> float:
        """Collective time of a step with `tokens` tokens: affine in the tokens."""
        if tokens <= 0:
            return 0.0
        return self._comm_const + self._comm_per_token * tokens

    def _comm_uncached(self, tokens: int, latency_only: bool = False) -> float:
        dep, eff = self.dep, self.dep.efficiency
        m = dep.model
        msg = 0.0 if latency_only else tokens / dep.attention_dp * m.hidden_size * ACT_BYTES
        t = 0.0
        if dep.tp > 1:
            d = min(dep.tp, self.domain)
            nodes = -(-dep.tp // d)
            # Ring all-reduce inside a domain; across domains hierarchical (reduce-scatter in
            # the domain, all-reduce of the 1/d shards over the NICs, all-gather back).
            per_call = 2.0 * (d - 1) / d * msg / self.link + eff.collective_latency_s
            if nodes > 1:
                per_call += ((2.0 * (nodes - 1) / nodes * msg / d + self.nic_lat_bytes)
                             / self.nic + eff.collective_latency_s)
            # one all-reduce after each mixer and each FFN (2 per standard decoder layer)
            t += (m.mixer_layer_count + m.ffn_layer_count) * per_call
        if dep.attention_dp > 1 and m.moe:  # gather tokens to, and back from, the experts
            per_call = (self._spread(msg * (dep.attention_dp - 1), dep.attention_dp * dep.tp)
                        + eff.collective_latency_s)
            t += 2 * self.moe_layers * per_call
        elif dep.ep > 1 and m.moe:
            k = m.moe.experts_per_token
            # LatentMoE dispatches the latent vectors, not the hidden states
            shrink = (m.moe.latent_size or m.hidden_size) / m.hidden_size
            per_call = (self._spread(msg * shrink * k * (dep.ep - 1) / dep.ep, dep.ep)
                        + eff.collective_latency_s)
            t += 2 * self.moe_layers * per_call
        if dep.pp > 1:
            t += (dep.pp - 1) * (msg / self.link + eff.collective_latency_s)
        return t

    def _spread(self, nbytes: float, group: int) -> float:
        """Time for each GPU of an all-to-all group of `group` GPUs to send `nbytes` spread
        evenly over the others: the share bound for other domains goes over the NICs."""
        if group <= self.domain or group <= 1:
            return nbytes / self.link
        inside = (self.domain - 1) / (group - 1)
        across = nbytes * (1.0 - inside) + self.nic_lat_bytes
        return nbytes * inside / self.link + across / self.nic

    def _coeffs(self, b: StepBatch) -> tuple[_Coeffs, StepBreakdown]:
        tokens = b.tokens
        lin, lin_bound = self._linear(tokens, b.decode_seqs + b.prefill_seqs)
        # Prefill attention: FLOPs over pairs, bytes over the KV the chunks read.
        pf_flop, pf_byte = self._attn_per_pair(decode=False)
        pairs_full = b.prefill_attn_pairs * self.full_frac
        pairs_slide = min(b.prefill_attn_pairs, b.prefill_tokens * float(self.window)) * (
            1.0 - self.full_frac
        )
        pre_c = (pairs_full + pairs_slide) * pf_flop
        pre_m = b.prefill_kv_read_tokens * pf_byte
        pre_attn = max(pre_c, pre_m)
        dc_flop, dc_byte = self._attn_per_pair(decode=True)
        per_ctx = max(dc_flop, dc_byte)
        comm = self._comm(tokens)
        # Per-layer overhead: a step runs every layer (PP stages run in turn), each layer a
        # fixed number of kernels.
        over = 0.0 if tokens == 0 else (
            self._over_const + self._over_per_seq * (b.decode_seqs + b.prefill_seqs)
        )
        elem = self.elem_per_token * tokens
        state = self._state_per_seq * (b.decode_seqs + b.prefill_seqs) if tokens else 0.0
        coeffs = _Coeffs(
            const=lin + elem + pre_attn + state + comm,
            full_per_ctx=per_ctx * self.full_frac,
            sliding_per_ctx=per_ctx * (1.0 - self.full_frac),
            sliding_cap=float(b.decode_seqs * self.window),
            over=over,
            overlap=self.overlap,
        )
        dec_attn = coeffs.full_per_ctx * b.decode_ctx_tokens + coeffs.sliding_per_ctx * min(
            b.decode_ctx_tokens, coeffs.sliding_cap
        )
        compute_bound = pre_c > pre_m if b.prefill_tokens else dc_flop > dc_byte
        attn_bound = "compute" if compute_bound else "bandwidth"
        gpu = lin + elem + pre_attn + dec_attn + state + comm
        # the overhead the GPU work does not hide
        brk = StepBreakdown(lin + elem, lin_bound, pre_attn + dec_attn, attn_bound, comm,
                            over - self.overlap * min(gpu, over), state)
        return coeffs, brk

    # ---- StepTimeModel ---------------------------------------------------------------------
    def breakdown(self, batch: StepBatch) -> StepBreakdown:
        return self._coeffs(batch)[1]

    def step_time_s(self, batch: StepBatch) -> float:
        """Same value as `breakdown(batch).total_s`, without building the breakdown."""
        b = batch
        tokens = b.prefill_tokens + b.decode_seqs
        if tokens <= 0:
            return 0.0
        lin = self._linear(tokens, b.decode_seqs + b.prefill_seqs)[0]
        pf_flop, pf_byte = self._pair[False]
        pairs = b.prefill_attn_pairs
        capped = min(pairs, b.prefill_tokens * float(self.window))
        pairs_eff = pairs * self.full_frac + capped * (1.0 - self.full_frac)
        pre_attn = max(pairs_eff * pf_flop, b.prefill_kv_read_tokens * pf_byte)
        ctx = b.decode_ctx_tokens
        dec_attn = self._full_per_ctx * ctx + self._slide_per_ctx * min(
            ctx, float(b.decode_seqs * self.window)
        )
        comm = self._comm_const + self._comm_per_token * tokens
        seqs = b.decode_seqs + b.prefill_seqs
        over = self._over_const + self._over_per_seq * seqs
        gpu = (lin + self.elem_per_token * tokens + (pre_attn + dec_attn)
               + self._state_per_seq * seqs + comm)
        if self.overlap:
            return gpu + over - self.overlap * min(gpu, over)
        return gpu + over

    def decode_run_time_s(self, decode_seqs: int, decode_ctx_tokens: int, n_steps: int) -> float:
        if n_steps <= 0 or decode_seqs <= 0:
            return 0.0
        c, _ = self._coeffs(StepBatch(decode_seqs=decode_seqs, decode_ctx_tokens=decode_ctx_tokens))
        s, c0, n = float(decode_seqs), float(decode_ctx_tokens), n_steps
        total = c.gpu_run(s, c0, n) + n * c.over
        if c.overlap:
            # GPU work grows with the context, so it is below the fixed costs for the first k
            # steps and above after: sum of min(g, over) = the first k steps' g + the rest's over.
            lo, hi = 0, n  # k = steps with g < over (binary search; g is non-decreasing)
            while lo < hi:
                mid = (lo + hi) // 2
                if c.gpu(c0 + s * mid) < c.over:
                    lo = mid + 1
                else:
                    hi = mid
            total -= c.overlap * (c.gpu_run(s, c0, lo) + (n - lo) * c.over)
        return total

    # ---- derived figures -------------------------------------------------------------------
    def prefill_time_s(self, prompt_tokens: int, chunk_tokens: int | None = None) -> float:
        """Time to prefill one prompt alone, in chunks of `chunk_tokens` (the engine's
        `max_num_batched_tokens` by default)."""
        chunk = int(chunk_tokens or self.dep.engine.max_num_batched_tokens.value)
        t, done = 0.0, 0
        while done < prompt_tokens:
            n = min(chunk, prompt_tokens - done)
            t += self.step_time_s(StepBatch.prefill_chunk(n, done))
            done += n
        return t

    def decode_step_time_s(self, batch: int, context_tokens: int) -> float:
        """One decode step of `batch` sequences each at `context_tokens` of context."""
        batch_ = StepBatch(decode_seqs=batch, decode_ctx_tokens=batch * context_tokens)
        return self.step_time_s(batch_)
