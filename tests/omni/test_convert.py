"""`omni convert --from longcat-omni` on a tiny synthetic checkpoint written in the
official release layout (spec section 5; key names spelled out here)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from omni.cli import main as cli_main
from omni.config import get_omni_config
from omni.model import OmniModel
from omni.tokenizer import DEFAULT_TOKENIZER_DIR


def _write_official(model: OmniModel, root) -> None:
    cfg = model.config
    llm = cfg.llm
    (root / "vision").mkdir(parents=True)
    (root / "audio").mkdir()
    (root / "audio_codec").mkdir()
    conf = {
        "architectures": ["LongcatFlashOmniForCausalLM"], "model_type": "longcat_flash",
        "vocab_size": llm.vocab_size, "hidden_size": llm.hidden_size, "num_layers": llm.num_layers,
        "num_attention_heads": llm.num_attention_heads, "ffn_hidden_size": llm.ffn_hidden_size,
        "expert_ffn_hidden_size": llm.expert_ffn_hidden_size, "n_routed_experts": llm.n_routed_experts,
        "zero_expert_num": llm.zero_expert_num, "moe_topk": llm.moe_topk,
        "routed_scaling_factor": llm.routed_scaling_factor, "q_lora_rank": llm.q_lora_rank,
        "kv_lora_rank": llm.kv_lora_rank, "qk_nope_head_dim": llm.qk_nope_head_dim,
        "qk_rope_head_dim": llm.qk_rope_head_dim, "v_head_dim": llm.v_head_dim, "rope_theta": llm.rope_theta,
        "onmi_extra_info": {"num_multi_ids": 4, "audio_head_num": 4, "audio_vocab_size": cfg.audio_vocab_size,
                            "audio_id_offset": 32, "audio_rep_penalty_window": 30, "audio_repetition_penalty": 1.1,
                            "has_proj": False},
    }
    (root / "config.json").write_text(json.dumps(conf))
    # LLM weights with the original per-expert names, in two shards + index, plus ignored MTP weights
    sd = {k[len("llm."):]: v.clone() for k, v in model.state_dict().items() if k.startswith("llm.")}
    i = llm.expert_ffn_hidden_size
    official = {}
    for k, v in sd.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            p = k[: -len(".gate_up_proj")]
            for e in range(llm.n_routed_experts):
                official[f"{p}.{e}.gate_proj.weight"] = v[e, :i].contiguous()
                official[f"{p}.{e}.up_proj.weight"] = v[e, i:].contiguous()
        elif k.endswith("mlp.experts.down_proj"):
            p = k[: -len(".down_proj")]
            for e in range(llm.n_routed_experts):
                official[f"{p}.{e}.down_proj.weight"] = v[e].contiguous()
        else:
            official[k] = v
    official["model.mtp.layers.0.weight"] = torch.zeros(2)
    keys = sorted(official)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, ks in shards.items():
        save_file({k: official[k] for k in ks}, str(root / name))
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: n for n, ks in shards.items() for k in ks}})
    )
    torch.save({"word_embeddings.weight": sd["model.embed_tokens.weight"]}, root / "language_model_embedding.pt")
    v = cfg.vision
    (root / "vision/config.json").write_text(json.dumps({
        "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size, "num_hidden_layers": v.num_layers,
        "num_attention_heads": v.num_heads, "patch_size": 14, "temporal_patch_size": 2, "min_tokens": v.min_tokens,
        "max_tokens": v.max_tokens, "adaptor_dim": v.adaptor_dim, "max_tokens_video": v.max_video_tokens,
        "spatial_merge_size": 1, "resize_factor": v.resize_factor,
    }))
    torch.save(model.vision.vit.state_dict(), root / "vision/vision_model.pt")
    torch.save(model.vision.projector.state_dict(), root / "vision/vision_projector.pt")
    a = cfg.audio
    (root / "audio/config.json").write_text(json.dumps({
        "input_size": a.input_size, "hidden_size": a.hidden_size, "proj_size": a.proj_size,
        "vocab_size": a.ctc_vocab_size, "nlayer": a.num_layers, "ndnn": 2, "num_right_layers": a.num_right_layers,
        "left_order": a.left_order, "right_order": a.right_order, "left_stride": 1, "right_stride": 1,
    }))
    (root / "audio/preprocessor_config.json").write_text(json.dumps({
        "fbank": {"num_mel_bins": 80, "frame_length": 25, "frame_shift": 10, "dither": 0.0},
        "splice": {"left": 7, "right": 7, "stride": 8}, "delta": {"delta_order": 0},
    }))
    from encoders.fbank import write_kaldi_stats

    stats = np.zeros((2, 81))
    stats[0, :80], stats[0, 80], stats[1, :80] = 3.0 * 100, 100, 20.0 * 100
    write_kaldi_stats(root / "audio/global_cmvn", stats)
    torch.save(model.audio_encoder.encoder.state_dict(), root / "audio/audio_encoder.pt")
    torch.save(model.audio_encoder.projector.state_dict(), root / "audio/audio_projector.pt")
    torch.save({f"audio_embeddings.{k}.weight": model.audio_embedding.audio_embeddings[k].weight.detach().clone()
                for k in range(4)}, root / "audio/audio_embeddings.pt")
    heads = {f"audio_output_layers.{k}.weight": model.audio_head.audio_output_layers[k].weight.detach().clone() for k in range(4)}
    heads.update({f"embedding.{k}.weight": model.audio_head.embedding[k].weight.detach().clone() for k in range(3)})
    torch.save(heads, root / "audio/audio_output_layers.pt")
    c = cfg.codec
    (root / "audio_codec/config.yaml").write_text(yaml.safe_dump({
        "ckpt_path": "LongCatAudioCodec_decoder.pt",
        "codec_config": {"codec_dimension": c.codec_dimension, "decoder_dim": c.decoder_dim,
                         "semantic_dim": c.semantic_dim, "codec_codebook_size": c.acoustic_subcodebook_size,
                         "codec_codebook_search_dim": c.acoustic_codebook_dim,
                         "semantic_token_nums": c.semantic_codebook_size, "codec_dec_ratios": list(c.dec_ratios),
                         "output_rate": c.sample_rate},
    }))
    torch.save(model.codec.model.decoder.state_dict(), root / "audio_codec/LongCatAudioCodec_decoder.pt")
    for f in DEFAULT_TOKENIZER_DIR.iterdir():
        shutil.copy2(f, root / f.name)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    torch.manual_seed(1)
    ref = OmniModel(get_omni_config("debug")).eval()
    root = tmp_path_factory.mktemp("release") / "LongCat-Flash-Omni"
    _write_official(ref, root)
    return ref, root


def test_convert_official_layout(official, tmp_path):
    ref, root = official
    assert cli_main(["convert", "--from", "longcat-omni", str(root), str(tmp_path / "out")]) == 0
    m = OmniModel.from_pretrained(tmp_path / "out")
    own, theirs = m.state_dict(), ref.state_dict()
    for k, v in theirs.items():
        if "cmvn" in k:
            continue
        assert torch.equal(own[k], v), k
    # CMVN comes from the Kaldi stats: mean 3, var 20 - 9
    torch.testing.assert_close(m.audio_encoder.frontend.cmvn.mean, torch.full_like(m.audio_encoder.frontend.cmvn.mean, 3.0))
    assert m.config.text_end_ids == (137,)
    dec_a = dict(m.codec.model.decoder.state_dict())
    for k, v in ref.codec.model.decoder.state_dict().items():
        assert torch.equal(dec_a[k], v), k
    # same numbers end to end: next-token logits and the audio heads on a prompt
    run = ref.prepare_many([__import__("omni.generation", fromlist=["OmniRequest"]).OmniRequest(text="hi")])[0]
    l1, h1 = ref.prefill(ref.new_cache(1, 32), [0], [run])
    l2, h2 = m.prefill(m.new_cache(1, 32), [0], [run])
    torch.testing.assert_close(l1, l2, atol=0, rtol=0)
    assert torch.equal(ref.audio_head.greedy(h1), m.audio_head.greedy(h2))


def test_convert_errors_name_file_and_key(official, tmp_path, capsys):
    ref, root = official
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    (broken / "audio/audio_output_layers.pt").unlink()
    assert cli_main(["convert", "--from", "longcat-omni", str(broken), str(tmp_path / "o1")]) == 2
    assert "audio/audio_output_layers.pt: missing" in capsys.readouterr().err
    heads = torch.load(root / "audio/audio_output_layers.pt")
    del heads["embedding.2.weight"]
    torch.save(heads, broken / "audio/audio_output_layers.pt")
    assert cli_main(["convert", "--from", "longcat-omni", str(broken), str(tmp_path / "o2")]) == 2
    assert "missing key 'embedding.2.weight'" in capsys.readouterr().err
    shutil.copy2(root / "audio/audio_output_layers.pt", broken / "audio/audio_output_layers.pt")
    idx = json.loads((broken / "model.safetensors.index.json").read_text())
    from safetensors.torch import load_file

    shard = "model-00001-of-00002.safetensors"
    tensors = load_file(str(broken / shard))
    victim = sorted(tensors)[0]
    del tensors[victim]
    save_file(tensors, str(broken / shard))
    idx["weight_map"].pop(victim)
    (broken / "model.safetensors.index.json").write_text(json.dumps(idx))
    assert cli_main(["convert", "--from", "longcat-omni", str(broken), str(tmp_path / "o3")]) == 2
    assert victim.split(".")[-2] in capsys.readouterr().err
