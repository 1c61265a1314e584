"""Text encoding equals diffusers' CogVideoXPipeline bit for bit; the cache never loads T5 for known prompts."""

import shutil
import warnings

import pytest
import torch

from richspace.encoding import PromptEncoder, encoder_identity

PROMPTS = [
    "The tiger, moves gracefully through the forest, its fur flowing in the breeze.",
    "a red cat",
    "x",
]
LONG = "a zebra " * 40  # 320 byte tokens: truncated to 226


def reference(pipe, prompt):
    """What CogVideoXPipeline.__call__ computes (it runs encode_prompt under no_grad)."""
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False)
    return embeds[0]


def test_parity_with_diffusers_encode_prompt(tiny_pipe, tiny_dir, tmp_path):
    encoder = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)
    embeds, n_ids = encoder(PROMPTS)
    assert embeds.shape == (3, 226, 32) and embeds.dtype == torch.float32
    for i, prompt in enumerate(PROMPTS):
        assert torch.equal(embeds[i], reference(tiny_pipe, prompt))
        real = tiny_pipe.tokenizer(prompt).input_ids  # no padding: real tokens, EOS included
        assert int(n_ids[i]) == len(real)
    assert not torch.equal(embeds[1, 100], torch.zeros(32))  # pad rows are not zero (no mask into T5)
    cached, cached_ids = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)(PROMPTS)
    assert torch.equal(cached, embeds) and torch.equal(cached_ids, n_ids)


def test_truncation_warns_and_matches_pipeline(tiny_pipe, tiny_dir, tmp_path):
    encoder = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)
    with pytest.warns(UserWarning, match="truncated to max_sequence_length=226"):
        embeds, n_ids = encoder([LONG])
    assert int(n_ids[0]) == 226
    assert torch.equal(embeds[0], reference(tiny_pipe, LONG))
    with pytest.warns(UserWarning, match="truncated"):  # a cache hit still says so
        PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)([LONG])


def forbid_t5(monkeypatch):
    from transformers import T5EncoderModel

    def refuse(*args, **kwargs):
        raise AssertionError("T5 was loaded")

    monkeypatch.setattr(T5EncoderModel, "from_pretrained", refuse)


def test_cache_hit_never_loads_t5(tiny_dir, tmp_path, monkeypatch):
    first = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)
    embeds, _ = first(PROMPTS)
    assert first.loaded
    forbid_t5(monkeypatch)
    second = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)
    again, _ = second(list(reversed(PROMPTS)))
    assert not second.loaded
    assert torch.equal(again, embeds.flip(0))
    with pytest.raises(AssertionError, match="T5 was loaded"):  # a new prompt does need T5
        second(["a prompt never seen"])


def test_only_missing_prompts_are_encoded(tiny_dir, tmp_path, monkeypatch):
    PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)(PROMPTS[:1])
    encoder = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)
    encoder.load()
    import richspace.encoding as enc

    seen = []
    real = enc.t5_prompt_embeds
    monkeypatch.setattr(enc, "t5_prompt_embeds", lambda tok, te, p, n: seen.append(p) or real(tok, te, p, n))
    encoder(PROMPTS)
    assert seen == PROMPTS[1:]


def entry_paths(tmp_path):
    return sorted(p for p in tmp_path.rglob("*.safetensors"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign", "flip"])
def test_corrupt_or_foreign_entries_are_recomputed(tiny_pipe, tiny_dir, tmp_path, damage):
    encoder = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)
    encoder(PROMPTS[:2])
    key_path = encoder._path(encoder._key(PROMPTS[0]))
    other_path = encoder._path(encoder._key(PROMPTS[1]))
    data = key_path.read_bytes()
    if damage == "truncate":
        key_path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        key_path.write_bytes(b"not a safetensors file")
    elif damage == "foreign":  # another prompt's valid entry under this key's name
        shutil.copy(other_path, key_path)
    else:  # one byte of the tensor data changed: the file still parses
        key_path.write_bytes(data[:-5] + bytes([data[-5] ^ 0x40]) + data[-4:])
    fresh = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)
    with pytest.warns(UserWarning, match="corrupt or belongs to another key"):
        embeds, _ = fresh(PROMPTS[:1])
    assert fresh.loaded
    assert torch.equal(embeds[0], reference(tiny_pipe, PROMPTS[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: the next read is a clean hit
        PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)(PROMPTS[:1])


def test_identity_follows_the_encoder_files(tiny_dir, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_dir / "cogvideox", copy)
    assert encoder_identity(copy, tmp_path) == encoder_identity(tiny_dir / "cogvideox", tmp_path)
    weights = copy / "text_encoder" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 1
    weights.write_bytes(bytes(data))
    assert encoder_identity(copy, tmp_path) != encoder_identity(tiny_dir / "cogvideox", tmp_path)


def test_missing_weights_say_where_real_weights_come_from(tmp_path):
    with pytest.raises(FileNotFoundError, match="hub id such as THUDM/CogVideoX-2b"):
        PromptEncoder(tmp_path / "no-such-dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="'.*empty' lack text_encoder, tokenizer: give the directory"):
        PromptEncoder(tmp_path / "empty", cache_dir=tmp_path)
    for part in ("text_encoder", "tokenizer"):  # the folders, but nothing in them
        (tmp_path / "empty" / part).mkdir()
    with pytest.raises(FileNotFoundError, match="has no text_encoder/ folder"):
        PromptEncoder(tmp_path / "empty", cache_dir=tmp_path)(["x"])
