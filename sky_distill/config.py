"""Typed configuration: the Hydra config is converted here once, at the stage boundary.

Library code takes these objects (or plain arguments), never the raw `DictConfig`. Conversion
validates every group, collects every problem and raises one `ConfigError` naming each key.
"""

from __future__ import annotations

import os
import string
from typing import Any, Literal, TypedDict, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sky_distill.errors import SkyDistillError
from sky_distill.verify.sandbox import BACKENDS as SANDBOX_BACKENDS
from sky_distill.verify.sandbox import SandboxLimits

_LIMITS = SandboxLimits()


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(SkyDistillError, ValueError):
    """Every problem found in a config, one `key: message` per entry."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid config: " + "; ".join(problems))


class PathsConfig(ConfigModel):
    """Every directory a run uses, made absolute so that all processes agree on them."""

    root: str
    runs_dir: str
    run_dir: str
    models_dir: str
    benchmarks_dir: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _absolute(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: os.path.abspath(value) if isinstance(value, str) else value for key, value in data.items()}
        return data


# --- models -------------------------------------------------------------------------------


class EngineConfig(ConfigModel):
    """How a model is served for sampling: vLLM in-process, or an OpenAI-compatible server."""

    backend: Literal["vllm", "openai"] = "vllm"
    dtype: str = "auto"
    max_model_len: int | None = Field(default=None, gt=0)
    tensor_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(default=1, ge=1)  # engine processes, each on its own GPUs
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    cpu_kv_cache_gb: int = Field(default=1, ge=1)  # VLLM_CPU_KVCACHE_SPACE on CPU builds
    max_num_seqs: int | None = Field(default=None, gt=0)  # sequences decoded together (vLLM default if null)
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    enable_chunked_prefill: bool | None = None  # null: vLLM's default (off on CPU, see vllm_engine.py)
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    trust_remote_code: bool = False
    max_in_flight: int = Field(default=4096, gt=0)  # requests queued in vLLM at once, topped up as they finish
    # what sampling.logprobs records: the model's own distribution (raw: before temperature, top-k/p,
    # penalties; what logit distillation needs) or the one sampled from (processed)
    logprobs_mode: Literal["raw_logprobs", "processed_logprobs"] = "raw_logprobs"
    engine_args: dict[str, Any] = Field(default_factory=dict)  # any other vllm.LLM argument, passed as is
    # OpenAI-compatible servers
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    served_model_name: str | None = None
    concurrency: int = Field(default=16, ge=1)
    max_retries: int = Field(default=6, ge=0)
    retry_backoff_s: float = Field(default=1.0, gt=0)  # first wait; doubles per retry (with jitter)
    retry_backoff_max_s: float = Field(default=60.0, gt=0)
    request_timeout_s: float = Field(default=600.0, gt=0)
    requests_per_minute: float | None = Field(default=None, gt=0)
    use_chat_api: bool = True
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    vllm_server: bool = False  # ask a vLLM server for token ids (with log-probs): vLLM-only request fields
    tokenizer: str | None = None  # local tokenizer for the completions API and prompt-length checks
    extra_body: dict[str, Any] = Field(default_factory=dict)  # provider-specific request fields

    @model_validator(mode="after")
    def _openai_needs_url(self) -> EngineConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs engine.base_url")
        return self


class BootstrapConfig(ConfigModel):
    """How to build a tiny model from scratch on the synthetic task when its path is missing."""

    architecture: Literal["qwen2", "llama"] = "qwen2"
    hidden_size: int = Field(default=128, gt=0)
    num_layers: int = Field(default=2, gt=0)
    num_heads: int = Field(default=2, gt=0)
    num_kv_heads: int = Field(default=2, gt=0)
    intermediate_size: int = Field(default=512, gt=0)
    style: Literal["worked", "direct"] = "worked"
    carry_slip: float = Field(default=0.0, ge=0, lt=1)  # worked solutions drop each carry with this probability
    seed: int = 0  # fixed apart from the run's seed: every seed of an experiment distils the same teacher
    num_examples: int = Field(default=20000, gt=0)
    max_steps: int = Field(default=300, gt=0)
    learning_rate: float = Field(default=3e-3, gt=0)
    batch_size: int = Field(default=64, gt=0)


class ServeConfig(ConfigModel):
    """A vLLM deployment of a model too big for one node (slurm/serve.sbatch): tensor parallel
    within each node, pipeline parallel across nodes, over a Ray cluster; OpenAI-compatible."""

    nodes: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=8, ge=0)
    tensor_parallel_size: int = Field(default=8, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    port: int = Field(default=8000, gt=0, lt=65536)
    dtype: str = "auto"
    max_model_len: int | None = Field(default=None, gt=0)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    reasoning_parser: str | None = None  # e.g. deepseek_r1: the thinking comes back in its own field
    args: list[str] = Field(default_factory=list)  # any other server argument, passed as is
    startup_timeout_s: float = Field(default=3600.0, gt=0)  # loading 671B takes a while

    @model_validator(mode="after")
    def _fits_the_nodes(self) -> ServeConfig:
        gpus = self.tensor_parallel_size * self.pipeline_parallel_size
        if self.gpus_per_node and gpus != self.nodes * self.gpus_per_node:
            raise ValueError(
                f"tensor_parallel_size x pipeline_parallel_size = {gpus} GPUs, but nodes x gpus_per_node = "
                f"{self.nodes} x {self.gpus_per_node} = {self.nodes * self.gpus_per_node}"
            )
        return self


PROMPT_FIELDS = ("problem", "choices")  # the placeholders a prompt template may use
ThoughtFormat = Literal["none", "think", "sky_t1", "reasoning_field"]


class ModelConfig(ConfigModel):
    """A teacher or student: where its weights are and how to prompt and serve it."""

    name: str = Field(min_length=1)
    path: str = Field(min_length=1)  # Hub id or local directory
    revision: str | None = None
    system_prompt: str | None = None
    prompt_template: str = "{problem}"
    prompt_templates: dict[Literal["math", "code", "choice"], str] = Field(default_factory=dict)  # per task family
    chat_template: str | None = None  # Jinja text or a .jinja file; replaces the tokenizer's template
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)  # e.g. {enable_thinking: true}
    thought_format: ThoughtFormat = "none"  # how the model's responses separate thinking from the answer
    engine: EngineConfig = EngineConfig()
    bootstrap: BootstrapConfig | None = None
    serve: ServeConfig | None = None  # set: slurm/pipeline.py starts this deployment before generation

    @model_validator(mode="after")
    def _template_has_problem(self) -> ModelConfig:
        templates = {"prompt_template": self.prompt_template}
        templates.update({f"prompt_templates.{family}": text for family, text in self.prompt_templates.items()})
        for key, template in templates.items():
            try:
                fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
            except ValueError as error:
                raise ValueError(f"{key}: {error} (write a literal brace as {{{{ or }}}})") from None
            if "problem" not in fields:
                raise ValueError(f"{key} must contain '{{problem}}'")
            unknown = sorted(fields - set(PROMPT_FIELDS))
            if unknown:
                raise ValueError(
                    f"{key} uses unknown field(s) {unknown}; allowed: {list(PROMPT_FIELDS)} "
                    "(write a literal brace as {{ or }})"
                )
        return self


# --- task ---------------------------------------------------------------------------------


class TaskSourceConfig(ConfigModel):
    """One source of a mixture: a Hub dataset split (or its local JSONL copy), filtered and drawn."""

    dataset: str = Field(min_length=1)
    subset: str | None = None
    split: str = "train"
    where: dict[str, str | list[str]] = Field(default_factory=dict)  # column -> value(s) a row must have
    head: int | None = Field(default=None, gt=0)  # the first N rows that pass `where` (Sky-T1: olympiads 20K)
    count: int | None = Field(default=None, gt=0)  # at most N of those, drawn by (seed, source); null: all
    fields: dict[str, str] = Field(default_factory=dict)  # record field -> source column
    answer_type: Literal["math", "code", "choice"] = "math"
    answer_from_solution: bool = False  # gold = last \boxed{} of the column fields.solution names
    tests_from: Literal["apps"] | None = None  # apps: APPS/TACO `input_output` -> the verifier's test contract


class TaskConfig(ConfigModel):
    """Where problems come from: the synthetic task, a local JSONL file, a Hub dataset, or a mixture."""

    name: str = Field(min_length=1)
    kind: Literal["arithmetic", "jsonl", "hub", "mixture"] = "arithmetic"
    seed: int = 0
    # arithmetic
    min_digits: int = Field(default=2, ge=1)
    max_digits: int = Field(default=3, ge=1)
    train_size: int = Field(default=512, ge=0)
    test_size: int = Field(default=200, ge=0)
    # jsonl / hub
    path: str | None = None
    dataset: str | None = None
    subset: str | None = None
    split: str = "train"
    fields: dict[str, str] = Field(default_factory=dict)  # record field -> source column
    answer_type: Literal["math", "code", "choice"] = "math"
    answer_from_solution: bool = False  # gold = last \boxed{} of the column fields.solution names
    limit: int | None = Field(default=None, gt=0)
    test_path: str | None = None  # jsonl: held-out problems, scored as the benchmark named after the task
    test_split: str | None = None  # hub: the held-out split, scored as the benchmark named after the task
    # mixture
    sources: dict[str, TaskSourceConfig | None] = Field(default_factory=dict)  # null drops an inherited source
    local_dir: str | None = None  # <local_dir>/<source>.jsonl, in the Hub's columns, instead of the Hub
    expected_traces: int | None = Field(default=None, gt=0)  # kept traces the published recipe trained on

    @model_validator(mode="after")
    def _source_is_named(self) -> TaskConfig:
        if self.kind == "jsonl" and not self.path:
            raise ValueError("task kind 'jsonl' needs task.path")
        if self.kind == "hub" and not self.dataset:
            raise ValueError("task kind 'hub' needs task.dataset")
        if self.kind == "mixture" and not any(self.sources.values()):
            raise ValueError("task kind 'mixture' needs task.sources")
        if self.min_digits > self.max_digits:
            raise ValueError("task.min_digits must not exceed task.max_digits")
        return self


# --- stages -------------------------------------------------------------------------------


class SamplingConfig(ConfigModel):
    """Sampling parameters, passed to vLLM or the API as they are."""

    n: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = -1
    min_p: float = Field(default=0.0, ge=0, le=1)
    max_tokens: int = Field(default=512, gt=0)
    stop: list[str] = Field(default_factory=list)
    seed: int = 0
    logprobs: int | None = Field(default=None, ge=0)  # top-k log-probs per sampled token


class GenerateConfig(ConfigModel):
    split: str = "train"
    sampling: SamplingConfig = SamplingConfig()
    shard_index: int = Field(default=0, ge=0)
    shard_count: int = Field(default=1, ge=1)
    all_shards: bool = False  # every shard in turn in one process, then merge (the local pipeline)
    per_sample_seeds: bool = True  # each sample its own seed (same traces however run); false: vLLM's own seed only
    flush_every: int = Field(default=64, gt=0)  # samples buffered before an append (and fsync)
    flush_seconds: float = Field(default=5.0, gt=0)  # ... or seconds; fsync at most this often

    @model_validator(mode="after")
    def _shard_in_range(self) -> GenerateConfig:
        if self.shard_index >= self.shard_count:
            raise ValueError(f"shard_index {self.shard_index} must be below shard_count {self.shard_count}")
        return self


class SandboxConfig(ConfigModel):
    """How code answers run (sky_distill.verify.sandbox): isolation backend, limits, output comparison.
    Backend names and limit defaults are the sandbox's own (`BACKENDS`, `SandboxLimits`)."""

    # auto: bwrap, else landlock, else code checks are refused; unshare and unsafe_process expose the host
    backend: Literal[SANDBOX_BACKENDS] = "auto"  # type: ignore[valid-type]
    site_packages: bool = False  # let programs import the environment's packages (numpy); stdlib only if false
    test_timeout_s: float = Field(default=_LIMITS.timeout_s, gt=0)  # per stdio case, or a whole functional program
    memory_mb: int = Field(default=_LIMITS.memory_mb, ge=64)
    max_processes: int = Field(default=_LIMITS.max_processes, ge=1)  # processes and threads
    max_file_mb: int = Field(default=_LIMITS.max_file_mb, ge=1)
    disk_mb: int = Field(default=_LIMITS.disk_mb, ge=1)  # the program's writable tmpfs
    max_output_mb: int = Field(default=_LIMITS.max_output_bytes >> 20, ge=1)
    float_tolerance: float = Field(default=1e-6, ge=0)
    stop_at_first_failure: bool = True

    def limits(self, timeout_s: float, memory_mb: int | None = None) -> SandboxLimits:
        """The limits of one program run under these settings."""
        return SandboxLimits(
            timeout_s=timeout_s,
            memory_mb=memory_mb or self.memory_mb,
            max_processes=self.max_processes,
            max_file_mb=self.max_file_mb,
            disk_mb=self.disk_mb,
            max_output_bytes=self.max_output_mb << 20,
        )


class DedupConfig(ConfigModel):
    """Duplicate removal before selection."""

    exact: bool = False  # drop a trace whose response repeats an earlier one of the same problem
    near_problems: bool = False  # drop near-duplicate problems (MinHash over word shingles)
    threshold: float = Field(default=0.8, gt=0, le=1)  # estimated Jaccard similarity
    shingle_words: int = Field(default=5, ge=1)
    num_perm: int = Field(default=64, ge=8)


class DecontaminateConfig(ConfigModel):
    """Drop training problems that contain an eval problem (word n-grams) of a registry benchmark, read as eval
    reads it: its local copy in paths.benchmarks_dir, else the Hub (`source`)."""

    benchmarks: list[str] = Field(default_factory=list)  # names in the eval registry (eval/benchmarks/)
    registry_dir: str | None = None  # benchmark definitions; null: the repository's eval/
    source: Literal["auto", "local", "hub"] = "auto"
    ngram: int = Field(default=8, ge=1)
    # contaminated: a training problem holds this share of one eval problem's n-grams
    min_overlap: float = Field(default=0.5, gt=0, le=1)


class SFTFormatConfig(ConfigModel):
    """How kept traces are written as chat records."""

    format: Literal["raw", "think", "sky_t1"] = "raw"  # the assistant turn: as sampled, <think> tags, Sky-T1 tags
    system_prompt: str | None = None  # replaces the prompt's system turn; null keeps the teacher's


class VerifyConfig(ConfigModel):
    timeout_s: float = Field(default=5.0, gt=0)
    workers: int = Field(default=2, ge=1)
    policy: Literal["all_correct", "first_k", "shortest", "all"] = "all_correct"
    k: int | None = Field(default=None, gt=0)
    drop_truncated: bool = True
    min_tokens: int | None = Field(default=None, ge=0)  # length filters on completion tokens
    max_tokens: int | None = Field(default=None, gt=0)
    sandbox: SandboxConfig = SandboxConfig()
    dedup: DedupConfig = DedupConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    sft: SFTFormatConfig = SFTFormatConfig()
    # an external trace set to judge instead of this run's generation (same forms as train.data)
    traces: str | dict[str, Any] | list[str | dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _k_for_policy(self) -> VerifyConfig:
        if self.policy in ("first_k", "shortest") and self.k is None:
            raise ValueError(f"policy {self.policy!r} needs verify.k")
        if self.min_tokens is not None and self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError("verify.min_tokens must not exceed verify.max_tokens")
        return self


class FeatureDistillConfig(ConfigModel):
    """Hidden-state matching between chosen layers (online teacher only)."""

    weight: float = Field(default=0.0, ge=0)
    kind: Literal["mse", "cosine"] = "mse"
    # [student, teacher] indices into `output_hidden_states` (0: embeddings, -1: the last layer)
    layers: list[tuple[int, int]] = Field(default_factory=list)


class DistillConfig(ConfigModel):
    """Logit (and feature) distillation beside the trace cross-entropy; used when train.loss is distill."""

    kind: Literal["forward_kl", "reverse_kl", "jsd", "tv"] = "forward_kl"
    temperature: float = Field(default=1.0, gt=0)
    beta: float = Field(default=0.5, ge=0, le=1)  # jsd only: 0 is forward KL, 1 reverse KL
    ce_weight: float = Field(default=1.0, ge=0)
    kd_weight: float = Field(default=1.0, ge=0)
    teacher: Literal["offline", "online"] = "offline"  # stored top-k log-probs, or a teacher forward pass
    teacher_path: str | None = None  # the teacher (online) or its tokenizer (offline compatibility check)
    features: FeatureDistillConfig = FeatureDistillConfig()

    @model_validator(mode="after")
    def _consistent(self) -> DistillConfig:
        if self.ce_weight == 0 and self.kd_weight == 0 and self.features.weight == 0:
            raise ValueError("ce_weight, kd_weight and features.weight are all 0: nothing to learn")
        if self.teacher == "online" and not self.teacher_path:
            raise ValueError("teacher 'online' needs distill.teacher_path")
        if self.features.weight > 0 and not self.features.layers:
            raise ValueError("features.weight > 0 needs features.layers ([[student, teacher], ...])")
        if self.features.weight > 0 and self.teacher != "online":
            raise ValueError("feature distillation needs teacher 'online' (hidden states are not stored)")
        return self


class OnPolicyConfig(ConfigModel):
    """On-policy distillation (train.loss=on_policy): rounds of student sampling, teacher scoring
    and a DeepSpeed update on the student's own samples (sky_distill.train.on_policy)."""

    rounds: int = Field(default=2, ge=1)
    prompts_per_round: int = Field(default=128, gt=0)  # training prompts, a new slice each round
    samples_per_prompt: int = Field(default=4, gt=0)
    steps_per_round: int = Field(default=50, gt=0)  # optimizer steps on each round's samples
    staleness: int = Field(default=0, ge=0)  # round r samples with the student of round r - staleness
    temperature: float = Field(default=1.0, ge=0)
    max_tokens: int = Field(default=160, gt=0)
    reverse_kl_weight: float = Field(default=1.0, ge=0)  # per-token reverse KL: the dense advantage
    clip_ratio: float | None = Field(default=0.2, gt=0)  # PPO's clip of the importance ratio; null: none
    kd_weight: float = Field(default=0.0, ge=0)  # divergence on the teacher's stored top-k (kd_kind)
    kd_kind: Literal["forward_kl", "reverse_kl", "jsd", "tv"] = "jsd"
    beta: float = Field(default=0.5, ge=0, le=1)  # jsd only
    top_k: int = Field(default=0, ge=0)  # teacher top-k rows stored per student token (kd_weight > 0)
    ce_weight: float = Field(default=0.0, ge=0)  # CE on the student's samples the verifier accepts
    verifier: Literal["off", "filter", "reward"] = "off"  # drop rejected samples, or reward correct ones
    reward_weight: float = Field(default=1.0, ge=0)  # verifier=reward: added to a correct sample's advantage
    teacher_path: str | None = None  # the teacher that scores the student's tokens (a forward pass)
    start_from: str | None = None  # a student trained in this run (<run_dir>/train/<name>/final); null: train.init

    @model_validator(mode="after")
    def _consistent(self) -> OnPolicyConfig:
        if self.reverse_kl_weight == 0 and self.kd_weight == 0 and self.ce_weight == 0:
            raise ValueError("reverse_kl_weight, kd_weight and ce_weight are all 0: nothing to learn")
        if self.kd_weight > 0 and self.top_k == 0:
            raise ValueError("kd_weight > 0 needs top_k > 0 (the teacher's top-k rows to compare with)")
        if self.ce_weight > 0 and self.verifier == "off":
            raise ValueError("ce_weight > 0 trains on verified samples: set verifier to filter or reward")
        return self


class TrainConfig(ConfigModel):
    name: str = Field(min_length=1)
    # verified | all (this run's traces), or files / Hub datasets: a path, glob, `owner/name`, a mapping
    # {path|hub, config, split, weight, layout, fields}, or a list of them (sky_distill.data_sources)
    data: Literal["verified", "all"] | str | dict[str, Any] | list[str | dict[str, Any]] = "verified"
    data_format: Literal["raw", "think", "sky_t1"] = "raw"  # files / datasets: how the thinking is written
    init: str = Field(min_length=1)  # the student to start from: Hub id or path
    epochs: float = Field(default=3.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    learning_rate: float = Field(default=1e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float = Field(default=1.0, gt=0)
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.95, ge=0, lt=1)
    adam_epsilon: float = Field(default=1e-8, gt=0)
    global_batch_size: int = Field(default=96, gt=0)
    batch_unit: Literal["rows", "examples"] = "rows"  # what global_batch_size counts (sky_distill.train.schedule)
    micro_batch_size: int = Field(default=1, gt=0)
    max_seq_len: int = Field(default=16384, gt=0)
    overlong: Literal["truncate", "drop"] = "truncate"  # examples longer than max_seq_len
    packing: bool = True
    group_by_length: bool = False
    chat_template: Literal["auto", "chatml", "llama3"] = "auto"  # auto: the tokenizer's own
    loss: Literal["ce", "distill", "on_policy"] = "ce"  # distill: train.distill's mix; on_policy: rounds
    distill: DistillConfig = DistillConfig()
    on_policy: OnPolicyConfig = OnPolicyConfig()
    gradient_checkpointing: bool = False
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    attn_implementation: Literal["auto", "eager", "sdpa", "sdpa_varlen", "flash_attention_2"] = "auto"
    liger_kernel: bool = False
    # losses from hidden states in chunks, never [tokens x vocab] logits (train/fused_loss.py); auto: for
    # vocabularies of FUSED_LOSS_MIN_VOCAB tokens or more, where logits dominate memory
    fused_loss: bool | Literal["auto"] = "auto"
    peak_tflops: float | None = Field(default=None, gt=0)  # per device, for MFU; null: known GPUs only
    num_procs: int = Field(default=1, ge=1)
    num_nodes: int = Field(default=1, ge=1)
    num_threads: int | None = Field(default=None, gt=0)
    seed: int = 0
    log_every: int = Field(default=10, gt=0)
    save_every: int | None = Field(default=None, gt=0)
    keep_last: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _name_is_a_name(self) -> TrainConfig:
        if any(character in self.name for character in "/[{\\"):
            raise ValueError(f"name {self.name!r} is not a directory name; set train.name when train.data names files")
        return self


class LoggerConfig(ConfigModel):
    backend: Literal["none", "wandb"] = "none"
    project: str = "sky-distill"
    entity: str | None = None
    run_name: str | None = None
    mode: Literal["online", "offline", "disabled"] | None = None  # None: WANDB_MODE, else online
    tags: list[str] = Field(default_factory=list)


class EvalSamplingOverrides(ConfigModel):
    """Sampling forced on every benchmark; a null key keeps each benchmark's own default."""

    n: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = None
    min_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    stop: list[str] | None = None
    seed: int = 0
    logprobs: int | None = Field(default=None, ge=0)


class BenchmarkOptions(ConfigModel):
    """Per-benchmark settings of one eval run (`eval.options.<benchmark>.*`)."""

    sampling: dict[str, Any] = Field(default_factory=dict)  # keys of SamplingConfig
    prompt_template: str | None = None
    limit: int | None = Field(default=None, gt=0)  # first N problems only (smoke runs)
    source: Literal["auto", "local", "hub"] = "auto"
    release: str | None = None  # LiveCodeBench release (release_v1 ... release_v6, v1 ... v6)
    date_from: str | None = None  # keep problems dated on or after (YYYY-MM-DD)
    date_to: str | None = None  # ... and before this date
    timeout_s: float | None = Field(default=None, gt=0)


class ThinkingBudgetConfig(ConfigModel):
    """s1-style budget forcing: cap (and optionally extend) the thinking before the answer."""

    thinking_tokens: int | None = Field(default=None, gt=0)  # null: no budget forcing
    min_thinking_tokens: int | None = Field(default=None, gt=0)  # suppress an earlier end of thinking
    max_extensions: int = Field(default=2, ge=0)  # times "Wait" may replace an early end of thinking
    end_of_thinking: str = "</think>"
    extend_with: str = "Wait"
    answer_tokens: int = Field(default=1024, gt=0)  # budget for the answer after the thinking
    answer_prefix: dict[str, str] = Field(default_factory=dict)  # per answer type, after a forced end

    @model_validator(mode="after")
    def _min_below_max(self) -> ThinkingBudgetConfig:
        if self.min_thinking_tokens is not None and self.thinking_tokens is None:
            raise ValueError("min_thinking_tokens needs thinking_tokens")
        if self.min_thinking_tokens and self.thinking_tokens and self.min_thinking_tokens > self.thinking_tokens:
            raise ValueError("min_thinking_tokens must not exceed thinking_tokens")
        return self


class ResponsesConfig(ConfigModel):
    """Score an externally produced responses file instead of generating."""

    path: str | None = None  # JSONL: id (or problem_id), response; optional sample_index, benchmark
    name: str | None = None  # results go to eval/<name>/; default: the file's stem
    tokenizer: str | None = None  # counts response tokens when rows have no completion_tokens
    allow_missing: bool = False  # score a partial file; problems without responses are reported as missing


class EvalTableConfig(ConfigModel):
    """What `sky-distill table` compares and how it renders."""

    metric: str = "avg@n"  # avg@n, pass@k, maj@k
    runs: list[str] = Field(default_factory=list)  # other run directories to include
    baselines: list[str] | Literal["all"] = "all"  # files in eval/baselines/ (stems), or all
    compare: list[str] = Field(default_factory=list)  # two models: a paired comparison
    pairs: list[tuple[str, str]] = Field(default_factory=list)  # across seeds: (a, b) differences a - b
    seed_runs: list[str] = Field(default_factory=list)  # run directories to aggregate as seeds (else `seeds`)
    formats: list[Literal["md", "csv", "tex"]] = Field(default_factory=lambda: ["md", "csv", "tex"])

    @model_validator(mode="after")
    def _pair(self) -> EvalTableConfig:
        if self.compare and len(self.compare) != 2:
            raise ValueError("compare takes exactly two models")
        return self


class EvalConfig(ConfigModel):
    models: list[str] = Field(default_factory=list)  # teacher, student, trained students, paths
    benchmarks: list[str] = Field(min_length=1)
    sampling: EvalSamplingOverrides = EvalSamplingOverrides()
    options: dict[str, BenchmarkOptions] = Field(default_factory=dict)  # per benchmark
    budget: ThinkingBudgetConfig = ThinkingBudgetConfig()
    responses: ResponsesConfig = ResponsesConfig()
    registry_dir: str | None = None  # benchmark definitions; null: the repository's eval/
    system_prompt: str | None = None  # replaces the models' own system prompts when set
    timeout_s: float = Field(default=10.0, gt=0)  # per check (a benchmark's own timeout wins)
    workers: int = Field(default=2, ge=1)
    ks: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    bootstrap_resamples: int = Field(default=1000, ge=0)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    rescore: bool = False  # re-verify finished samples (after a verifier change) without generating
    table: EvalTableConfig = EvalTableConfig()


class ExportConfig(ConfigModel):
    """What `sky-distill export` writes and pushes (sky_distill/export)."""

    dataset: Literal["verified", "all"] | None = "verified"
    name: str | None = None
    model: str | None = None
    harness: bool = True
    push: bool = False
    dataset_repo: str | None = None
    model_repo: str | None = None
    endpoint: str | None = None
    private: bool = True

    @model_validator(mode="after")
    def _repos_to_push(self) -> ExportConfig:
        if self.push and self.dataset and not self.dataset_repo:
            raise ValueError("push needs export.dataset_repo (owner/name), or export.dataset=null")
        if self.push and self.model and not self.model_repo:
            raise ValueError("push needs export.model_repo (owner/name), or export.model=null")
        return self


class OffloadConfig(BaseModel):
    """Where ZeRO offloads optimizer state or parameters (DeepSpeed's further keys pass through)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    device: Literal["none", "cpu", "nvme"]
    pin_memory: bool = False


class ZeroConfig(BaseModel):
    """`deepspeed.zero_optimization`, handed to DeepSpeed as is: the keys the project sets are checked,
    DeepSpeed's others pass through (DeepSpeed validates them at start)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    stage: Literal[0, 1, 2, 3]
    overlap_comm: bool | None = None
    contiguous_gradients: bool | None = None
    reduce_scatter: bool | None = None
    reduce_bucket_size: int | None = Field(default=None, gt=0)
    allgather_bucket_size: int | None = Field(default=None, gt=0)
    offload_optimizer: OffloadConfig | None = None
    offload_param: OffloadConfig | None = None

    @model_validator(mode="after")
    def _param_offload_needs_stage_3(self) -> ZeroConfig:
        if self.offload_param is not None and self.offload_param.device != "none" and self.stage != 3:
            raise ValueError(f"offload_param needs stage 3 (stage is {self.stage})")
        return self


class DeepSpeedConfig(ConfigModel):
    """The deepspeed/ group: ZeRO settings only (batch sizes, precision and lr come from train/)."""

    zero_optimization: ZeroConfig


PIPELINE_STAGES = ("bootstrap", "generate", "verify", "train", "eval", "table")


class PipelineStudent(ConfigModel):
    """A student the pipeline trains on this run's curated traces: `train.name` and its overrides."""

    name: str = Field(min_length=1)
    overrides: list[str] = Field(default_factory=list)


class PipelineConfig(ConfigModel):
    """The pipeline/ group: which stages run, the students trained, the models evaluated."""

    stages: list[Literal[PIPELINE_STAGES]] = Field(default_factory=lambda: list(PIPELINE_STAGES))  # type: ignore[valid-type]
    parallel: int = Field(default=1, ge=1)  # steps side by side (seed chains, the fixed models' eval)
    students: list[PipelineStudent] = Field(default_factory=list)
    eval_models: list[str] = Field(default_factory=list)  # roles (teacher, student), student names, paths

    @model_validator(mode="after")
    def _unique_students(self) -> PipelineConfig:
        names = [student.name for student in self.students]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"students: each name once (repeated: {repeated})")
        return self


def role_names(plain: dict[str, Any]) -> dict[str, str]:
    """What the roles `teacher` and `student` name in a (plain) config: its models' names. Every other
    model name in `eval.models`, `pipeline.eval_models` and `eval.table.pairs` names itself."""
    return {role: plain[role]["name"] for role in ("teacher", "student")}


def _validate(cls: type[BaseModel], data: Any, prefix: str, problems: list[str]) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        for detail in error.errors():
            key = ".".join([prefix, *(str(part) for part in detail["loc"])]).rstrip(".")
            message = detail["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {message}")
        return None


def to_container(cfg: Any) -> dict[str, Any]:
    """A resolved plain-dict copy of a Hydra/OmegaConf config (or a dict, returned as is)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        keys = [key for key in cfg if key != "hydra"]  # Hydra's own node needs its runtime to resolve
        return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def validate_groups(cfg: Any, groups: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """Validate each named group of `cfg`; raise one `ConfigError` listing every problem."""
    data = to_container(cfg)
    problems: list[str] = []
    typed = {}
    for name, cls in groups.items():
        if name not in data or data[name] is None:
            problems.append(f"{name}: missing config group")
            continue
        typed[name] = _validate(cls, data[name], name, problems)
    if problems:
        raise ConfigError(problems)
    return typed


class BootstrapGroups(TypedDict):
    teacher: ModelConfig
    student: ModelConfig
    task: TaskConfig
    train: TrainConfig
    paths: PathsConfig


class GenerateGroups(TypedDict):
    teacher: ModelConfig
    task: TaskConfig
    generate: GenerateConfig
    paths: PathsConfig


class MergeGroups(TypedDict):
    generate: GenerateConfig
    paths: PathsConfig


class VerifyGroups(TypedDict):
    verify: VerifyConfig
    paths: PathsConfig


class TrainGroups(TypedDict):
    train: TrainConfig
    paths: PathsConfig
    logger: LoggerConfig
    deepspeed: DeepSpeedConfig


class EvalGroups(TypedDict):
    eval: EvalConfig
    verify: VerifyConfig  # verify.sandbox: how code answers run
    teacher: ModelConfig
    student: ModelConfig
    task: TaskConfig
    paths: PathsConfig


class TableGroups(TypedDict):
    paths: PathsConfig
    eval: EvalConfig


class ExportGroups(TypedDict):
    export: ExportConfig
    paths: PathsConfig


class PipelineGroups(TypedDict):
    teacher: ModelConfig
    student: ModelConfig
    task: TaskConfig
    train: TrainConfig
    paths: PathsConfig
    generate: GenerateConfig
    verify: VerifyConfig
    logger: LoggerConfig
    deepspeed: DeepSpeedConfig
    eval: EvalConfig
    export: ExportConfig
    pipeline: PipelineConfig


STAGE_TYPES: dict[str, type] = {
    "bootstrap": BootstrapGroups,
    "generate": GenerateGroups,
    "merge": MergeGroups,
    "verify": VerifyGroups,
    "train": TrainGroups,
    "eval": EvalGroups,
    "table": TableGroups,
    "export": ExportGroups,
    "pipeline": PipelineGroups,
    "plan": PipelineGroups,
}
# The config groups each stage validates, from the types above (one declaration).
STAGE_GROUPS: dict[str, dict[str, type[BaseModel]]] = {
    stage: get_type_hints(groups) for stage, groups in STAGE_TYPES.items()
}
# train.loss=on_policy also samples the student on the task's problems and verifies them
ON_POLICY_GROUPS: dict[str, type[BaseModel]] = {"student": ModelConfig, "task": TaskConfig, "verify": VerifyConfig}


@overload
def stage_config(cfg: Any, stage: Literal["bootstrap"]) -> BootstrapGroups: ...
@overload
def stage_config(cfg: Any, stage: Literal["generate"]) -> GenerateGroups: ...
@overload
def stage_config(cfg: Any, stage: Literal["merge"]) -> MergeGroups: ...
@overload
def stage_config(cfg: Any, stage: Literal["verify"]) -> VerifyGroups: ...
@overload
def stage_config(cfg: Any, stage: Literal["train"]) -> TrainGroups: ...
@overload
def stage_config(cfg: Any, stage: Literal["eval"]) -> EvalGroups: ...
@overload
def stage_config(cfg: Any, stage: Literal["table"]) -> TableGroups: ...
@overload
def stage_config(cfg: Any, stage: Literal["export"]) -> ExportGroups: ...
@overload
def stage_config(cfg: Any, stage: Literal["pipeline", "plan"]) -> PipelineGroups: ...
def stage_config(cfg: Any, stage: str) -> Any:
    """The typed config groups a stage needs, validated together (one error listing all problems)."""
    return validate_groups(cfg, STAGE_GROUPS[stage])


def check_config(cfg: Any, stage: str) -> None:
    stage_config(cfg, stage)
