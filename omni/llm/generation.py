"""Generation with the backbone: batched prefill into cache slots, then a
decode loop (eager or CUDA-graph) with greedy / temperature / top-k / top-p
sampling and a repetition penalty.

    tokens = generate(model, [[1, 5, 9], [1, 7]], max_new_tokens=32,
                      sampling=SamplingConfig(temperature=0.7, top_p=0.9))
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm

from omni.llm.cache import MLACache
from omni.llm.model import LongcatFlashForCausalLM
from omni.llm.runner import DecodeRunner
from omni.llm.sampling import SamplingConfig, sample_next


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists -> ids [B, T], lengths [B]."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    t = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), t), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
    return ids.to(device), torch.tensor([len(p) for p in prompts], device=device)


@torch.no_grad()
def prefill(
    model: LongcatFlashForCausalLM, cache: MLACache, slots: Sequence[int], prompts: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Write the prompts into `slots` (appending to what they hold); returns
    the logits at each prompt's last token [B, V]."""
    ids, lens = pad_prompts(prompts, model.config.pad_token_id, cache.device)
    out = model(ids, cache=cache, slots=slots, lengths=lens, logits="last")
    return out.logits[:, 0]


@torch.no_grad()
def generate(
    model: LongcatFlashForCausalLM,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampling: SamplingConfig | None = None,
    eos_token_id: int | None = None,
    use_graph: bool = False,
    cache: MLACache | None = None,
    slots: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    eager_prefill: bool = False,
) -> list[list[int]]:
    """Continue each prompt by up to `max_new_tokens` tokens (stopping a row
    at `eos_token_id`, which is included). Returns the new tokens per row.

    eager_prefill: run the prompt's forward eagerly even where the decoder layers are
    compiled (`compile_layers`, static shapes): a prompt of a new length would otherwise
    compile the layers again for one call, while the decode step keeps one shape."""
    sampling = sampling or SamplingConfig(temperature=0.0)
    b = len(prompts)
    if max_new_tokens < 1:
        return [[] for _ in range(b)]
    if cache is None:
        need = max(len(p) for p in prompts) + max_new_tokens
        cache = model.new_cache(b, need)
    slots = list(range(b)) if slots is None else [int(s) for s in slots]
    dev = cache.device
    vocab = model.config.vocab_size
    seen = None
    if sampling.repetition_penalty != 1.0:
        seen = torch.zeros(b, vocab, dtype=torch.bool, device=dev)
        for i, p in enumerate(prompts):
            seen[i, torch.as_tensor(list(p), device=dev)] = True
    if eager_prefill:
        with torch.compiler.set_stance("force_eager"):
            logits = prefill(model, cache, slots, prompts)
    else:
        logits = prefill(model, cache, slots, prompts)
    contiguous = slots == list(range(slots[0], slots[0] + b))
    runner = DecodeRunner(model, cache, b, use_graph=use_graph, fixed_slots=slots if contiguous else None)
    out: list[list[int]] = [[] for _ in range(b)]
    done = [False] * b
    steps = tqdm(range(max_new_tokens), desc="decode", disable=not progress, leave=False)
    for step in steps:
        nxt = sample_next(logits, sampling, seen, generator)
        host = nxt.tolist()
        for i, tok in enumerate(host):
            if not done[i]:
                out[i].append(tok)
                done[i] = eos_token_id is not None and tok == eos_token_id
        if seen is not None:
            seen[torch.arange(b, device=dev), nxt] = True
        if all(done) or step == max_new_tokens - 1:
            break
        logits, _ = runner.step(slots, input_ids=nxt)
    return out
