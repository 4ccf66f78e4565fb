"""Tokenizer round trip, tiny model size, save/load round trip, clear load errors."""

import pytest
import torch

from rewards_as_labels.config import load_config
from rewards_as_labels.modeling import build_tiny_model, build_tokenizer, count_parameters, load_policy


@pytest.mark.parametrize("text", ["47+385=", "999*999=", "5-3=", "1 2"])
def test_tokenizer_round_trip(text):
    tok = build_tokenizer()
    ids = tok(text).input_ids
    assert len(ids) == len(text)  # one token per character, no special tokens added
    assert tok.decode(ids) == text


def test_tokenizer_pads_left_with_distinct_pad_and_eos():
    tok = build_tokenizer()
    enc = tok(["1+2=", "47+385="], padding=True, return_tensors="pt")
    assert enc.input_ids.shape == (2, 7)
    assert enc.input_ids[0, :3].tolist() == [tok.pad_token_id] * 3
    assert enc.attention_mask[0].tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert tok.pad_token_id != tok.eos_token_id and len(tok) == 18


def test_tiny_model_size_and_head_dim():
    cfg = load_config(profile="tiny")
    tok = build_tokenizer()
    model = build_tiny_model(cfg, tok)
    # 17 tokens x 128 -> 527,872 measured; our extra <unk> row adds 128
    assert count_parameters(model) == 528_000
    assert model.config.hidden_size // model.config.num_attention_heads >= 32
    assert model.config.tie_word_embeddings
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id


def test_small_heads_are_refused():
    with pytest.raises(ValueError, match="head_dim"):
        build_tiny_model(load_config(profile="tiny", overrides={"num_heads": 8}), build_tokenizer())


def test_save_and_load_round_trip(tmp_path, monkeypatch):
    cfg = load_config(profile="smoke")
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(cfg, tok)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_policy(cfg, tmp_path / "m")
    x = tok(["47+385="], return_tensors="pt").input_ids
    torch.testing.assert_close(loaded(x).logits, model(x).logits)
    assert loaded_tok.decode(loaded_tok("47+385=").input_ids) == "47+385="
    assert loaded_tok.padding_side == "left"
    # the warm-start folder is the default source when path and cfg.model are empty
    monkeypatch.chdir(tmp_path)  # runs/smoke/warmstart/model is relative and absent here
    with pytest.raises(ValueError, match="make warmstart PROFILE=smoke"):
        load_policy(cfg)


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_policy(load_config(profile="smoke", overrides={"model": str(tmp_path / "nope")}))
