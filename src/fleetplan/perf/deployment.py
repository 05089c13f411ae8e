"""A deployment: one model served on one replica's GPUs with a layout, precision and engine.

`Deployment` is the frozen input of every performance formula. `Deployment.build` resolves names
through the catalog and checks that the layout is possible (TP divides the heads, the GPU
computes the precision, the engine supports it) with an error that names the flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from fleetplan.catalog import (
    GPU,
    Engine,
    ModelSpec,
    Quant,
    get_engine,
    get_gpu,
    get_model,
    get_quant,
)
from fleetplan.errors import UsageError
from fleetplan.perf.efficiency import DEFAULT_EFFICIENCY, Efficiency
from fleetplan.perf.engine_defaults import on_gpu

__all__ = ["LAYOUT_FLAGS", "Deployment"]

#: The layout fields by the CLI flags that set them (how `Deployment.problems` names them).
LAYOUT_FLAGS: Mapping[str, str] = {"tp": "--tp", "pp": "--pp", "ep": "--ep",
                                   "attention_dp": "--attention-dp"}


@dataclass(frozen=True)
class Deployment:
    model: ModelSpec
    gpu: GPU
    quant: Quant
    engine: Engine
    tp: int = 1
    pp: int = 1
    ep: int = 1
    kv_quant: Quant | None = None  # KV-cache dtype; defaults to the weight quantization's KV dtype
    efficiency: Efficiency = field(default=DEFAULT_EFFICIENCY)
    # Attention data parallelism (SGLang `--enable-dp-attention`, TRT-LLM `enable_attention_dp`):
    # `attention_dp` ranks of `tp` GPUs each run attention on their own sequences, while MoE
    # experts are sharded over all tp x attention_dp GPUs. 1 = plain tensor parallelism.
    attention_dp: int = 1

    def __post_init__(self) -> None:
        # the engine's defaults that depend on the GPU and the layout (vLLM's batch limits,
        # SGLang's chunk and memory fraction), evaluated here so that every consumer (memory
        # budget, step model, simulator, planner, calibration) sees the same ones
        eng = on_gpu(self.engine, self.gpu, self.tp * self.attention_dp, self.pp)
        if eng is not self.engine:
            object.__setattr__(self, "engine", eng)

    @property
    def gpus(self) -> int:
        """GPUs in one replica (TP x PP x attention-DP; EP reuses the same GPUs)."""
        return self.tp * self.pp * self.attention_dp

    @property
    def kv_bytes_per_element(self) -> float:
        return (self.kv_quant or self.quant).kv_bytes

    @property
    def compute_dtype(self) -> str:
        return self.quant.compute_dtype

    @property
    def splits_heads(self) -> bool:
        """Whether tensor parallelism shards the attention heads evenly (engines shard
        attention by whole heads)."""
        return self.model.attention.num_heads % self.tp == 0

    def with_efficiency(self, eff: Efficiency) -> Deployment:
        return replace(self, efficiency=eff)

    @classmethod
    def build(
        cls,
        model: str | ModelSpec,
        gpu: str | GPU,
        precision: str | Quant = "bf16",
        engine: str | Engine = "vllm",
        *,
        tp: int = 1,
        pp: int = 1,
        ep: int = 1,
        kv_precision: str | None = None,
        efficiency: Efficiency | None = None,
        attention_dp: int = 1,
        disagg: bool = False,
    ) -> Deployment:
        """Resolve the names through the catalog; without `efficiency`, the calibrated one of
        the (GPU, engine, precision) group, model class and model (`efficiency_for`), of a
        disaggregated prefill or decode pool where `disagg`."""
        m = model if isinstance(model, ModelSpec) else get_model(model)
        g = gpu if isinstance(gpu, GPU) else get_gpu(gpu)
        q = precision if isinstance(precision, Quant) else get_quant(precision)
        e = engine if isinstance(engine, Engine) else get_engine(engine)
        kvq = get_quant(kv_precision, where="--kv-precision") if kv_precision else None
        if efficiency is None:
            from fleetplan.perf.calibration import efficiency_for, model_class_of

            efficiency = efficiency_for(g.name, e.name, q.name, model_class_of(m), m,
                                        disagg=disagg)
        dep = cls(m, g, q, e, tp, pp, ep, kvq, efficiency, attention_dp)
        dep.check()
        return dep

    def problems(self, names: Mapping[str, str] = LAYOUT_FLAGS) -> list[str]:
        """Why this layout cannot run (empty when it can); `names` says what the layout fields
        (tp, pp, ep, attention_dp) are called where the layout came from (the CLI's flags, a
        points file's columns)."""
        out: list[str] = []
        m, a = self.model, self.model.attention
        tp, pp, ep = names["tp"], names["pp"], names["ep"]
        for key, v in (("tp", self.tp), ("pp", self.pp), ("ep", self.ep),
                       ("attention_dp", self.attention_dp)):
            if v < 1:
                out.append(f"{names[key]} must be >= 1, got {v}")
        if out:
            return out
        if not self.splits_heads:
            out.append(f"{tp} {self.tp} does not divide {m.name}'s {a.num_heads} attention heads")
        if m.num_layers < self.pp:
            out.append(f"{pp} {self.pp} exceeds {m.name}'s {m.num_layers} layers")
        if self.ep > 1 and (m.moe is None or m.moe.num_experts % self.ep):
            out.append(f"{ep} {self.ep} needs a MoE model whose expert count it divides")
        if not self.gpu.native(self.quant.compute_dtype):
            out.append(
                f"{self.gpu.name} does not compute {self.quant.compute_dtype} natively "
                f"(needed by {self.quant.name})"
            )
        if self.quant.name not in self.engine.quantizations:
            out.append(f"{self.engine.name} does not support {self.quant.name}")
        if self.gpu.vendor not in self.engine.gpu_vendors:
            out.append(f"{self.engine.name} does not run on {self.gpu.vendor} GPUs")
        ic = self.gpu.interconnect
        if self.gpus > ic.domain_gpus and self.tp > ic.domain_gpus:
            if ic.scale_out_bytes_per_s is None:
                out.append(
                    f"{tp} {self.tp} exceeds {self.gpu.name}'s scale-up domain of "
                    f"{ic.domain_gpus} GPUs (no scale-out network in the catalog)"
                )
            elif self.tp % ic.domain_gpus:
                out.append(
                    f"{tp} {self.tp} spans {self.gpu.name} scale-up domains of "
                    f"{ic.domain_gpus} GPUs unevenly (a multiple of {ic.domain_gpus} is needed)"
                )
        return out

    def check(self) -> None:
        probs = self.problems()
        if probs:
            raise UsageError("; ".join(probs), where="deployment")
