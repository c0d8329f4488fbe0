"""One contract suite for every step-wise generator (design.md, habit 5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imgcot.core import concat_states, load_state, save_state
from imgcot.generators.run import run_to_end
from imgcot.nn import transformer
from tiny import tiny_generator

PROMPTS = ["a photo of a red star", "a photo of three hearts", "a photo of a cross below a square"]
SEEDS = [11, 22, 33]


@pytest.fixture(params=["maskgit", "ar"], scope="module")
def generator(request, tmp_path_factory):
    return tiny_generator(request.param, tmp_path_factory.mktemp(request.param))


def test_shapes_and_step_count(generator):
    state = generator.init(PROMPTS, SEEDS)
    assert state.tokens.shape == (3, 64)
    assert bool((state.tokens == generator.undecided).all())
    steps = 0
    while not generator.is_done(state):
        state = generator.step(state)
        steps += 1
        preview = generator.preview(state)
        assert preview.shape == (3, 32, 32, 3) and preview.dtype == torch.uint8
    assert steps == generator.num_steps
    final = generator.decode(state)
    assert final.shape == (3, 32, 32, 3)
    assert bool((state.tokens < generator.undecided).all())


def test_committed_tokens_stay_frozen(generator):
    state = generator.init(PROMPTS, SEEDS)
    while not generator.is_done(state):
        before = state.tokens.clone()
        state = generator.step(state)
        committed = before != generator.undecided
        assert torch.equal(state.tokens[committed], before[committed])


def test_same_seed_same_image_and_batch_equals_singles(generator):
    batch = generator.decode(run_to_end(generator, generator.init(PROMPTS, SEEDS)))
    again = generator.decode(run_to_end(generator, generator.init(PROMPTS, SEEDS)))
    assert torch.equal(batch, again)
    for i in range(len(PROMPTS)):
        single = generator.decode(run_to_end(generator, generator.init(PROMPTS[i : i + 1], SEEDS[i : i + 1])))
        assert torch.equal(single[0], batch[i])
    other = generator.decode(run_to_end(generator, generator.init(PROMPTS, [s + 1 for s in SEEDS])))
    assert not torch.equal(other, batch)


def test_forward_passes_counted_with_guidance(generator):
    state = run_to_end(generator, generator.init(PROMPTS, SEEDS))
    per_row = generator.num_steps if generator.KIND == "shapes-maskgit" else 64
    assert state.forwards == [2 * per_row] * 3


def test_save_load_round_trip(generator, tmp_path):
    generator.save_pretrained(tmp_path / "copy")
    loaded = type(generator).from_pretrained(tmp_path / "copy")
    a = generator.decode(run_to_end(generator, generator.init(PROMPTS, SEEDS)))
    b = loaded.decode(run_to_end(loaded, loaded.init(PROMPTS, SEEDS)))
    assert torch.equal(a, b)


def test_resume_saved_state_equals_uninterrupted(generator, tmp_path):
    uninterrupted = run_to_end(generator, generator.init(PROMPTS, SEEDS))
    state = generator.step(generator.init(PROMPTS, SEEDS))
    save_state(state, tmp_path / "state")
    resumed = run_to_end(generator, load_state(tmp_path / "state"))
    assert torch.equal(resumed.tokens, uninterrupted.tokens)
    assert resumed.forwards == uninterrupted.forwards


def test_select_and_fork_rows(generator):
    state = generator.step(generator.init(PROMPTS, SEEDS))
    picked = state.select([2, 0])
    assert picked.prompts == [PROMPTS[2], PROMPTS[0]] and torch.equal(picked.tokens[0], state.tokens[2])
    full = run_to_end(generator, state)
    part = run_to_end(generator, picked)
    assert torch.equal(part.tokens[0], full.tokens[2])
    forked = state.fork([0, 0], [101, 102])
    branches = run_to_end(generator, forked)
    assert not torch.equal(branches.tokens[0], branches.tokens[1])
    merged = concat_states([state.select([0]), state.select([1, 2])])
    assert torch.equal(run_to_end(generator, merged).tokens, full.tokens)


def test_revise_keeps_kept_tokens(generator):
    final = run_to_end(generator, generator.init(PROMPTS, SEEDS))
    keep = torch.ones_like(final.tokens, dtype=torch.bool)
    keep[:, 40:] = False
    revised = run_to_end(generator, generator.revise(final, keep))
    assert torch.equal(revised.tokens[:, :40], final.tokens[:, :40])
    assert bool((revised.tokens < generator.undecided).all())


def test_log_prob_is_finite_and_negative(generator):
    final = run_to_end(generator, generator.init(PROMPTS, SEEDS))
    logp = generator.log_prob(PROMPTS, final.tokens)
    assert logp.shape == (3,) and bool(torch.isfinite(logp).all()) and bool((logp < 0).all())


def test_stepping_leaves_the_parent_state_unchanged(generator):
    parent = generator.step(generator.init(PROMPTS, SEEDS))
    snapshot = parent.select(list(range(parent.batch)))  # indexed copies of every tensor and cache
    first = generator.step(parent)
    generator.step(parent.fork([0, 1, 2], [7, 8, 9]))  # a sibling branch decoded from the same parent
    again = generator.step(parent)
    assert torch.equal(first.tokens, again.tokens)
    for name in ("tokens", "predicted"):
        assert torch.equal(getattr(parent, name), getattr(snapshot, name))
    for held, kept in zip(parent.cache or [], snapshot.cache or [], strict=True):
        assert torch.equal(held[0], kept[0]) and torch.equal(held[1], kept[1])


def test_raster_steps_extend_their_buffers_in_place_and_second_branches_copy(tmp_path):
    generator = tiny_generator("ar", tmp_path)
    parent = generator.step(generator.init(PROMPTS, SEEDS))
    child = generator.step(parent)  # nothing written past the parent's cache: its buffers are extended in place
    assert child.kv_buffers is parent.kv_buffers and child.cache[0][0].data_ptr() == parent.cache[0][0].data_ptr()
    kept = child.select(list(range(child.batch)))  # indexed copies of the child's cache
    sibling = generator.step(parent)  # the parent's buffers are written past its cache now: this branch copies
    assert sibling.kv_buffers is not parent.kv_buffers and child.kv_buffers.written == child.cache[0][0].shape[2]
    for held, copy in zip(child.cache + child.uncond_cache, kept.cache + kept.uncond_cache, strict=True):
        assert torch.equal(held[0], copy[0]) and torch.equal(held[1], copy[1])
    finish = [generator.decode(run_to_end(generator, state)) for state in (child, sibling)]
    assert torch.equal(finish[0], finish[1])


def test_cached_raster_decoding_matches_a_full_forward(tmp_path):
    """Greedy, unguided AR decoding through the in-place KV buffers picks, at every position, the argmax of the
    uncached full-sequence forward over the same tokens (teacher forcing)."""
    generator = tiny_generator("ar", tmp_path).with_decoding(guidance=0.0, temperature=0.0)
    state = run_to_end(generator, generator.init(PROMPTS, SEEDS))
    assert state.forwards == [64] * 3  # unguided: one pass per token
    bos = torch.full((3, 1), generator.undecided, dtype=torch.long)
    logits = generator.model(generator.prompt_ids(PROMPTS), torch.cat([bos, state.tokens[:, :-1]], 1))[0]
    assert torch.equal(logits.argmax(-1), state.tokens)


def test_whole_buffer_attention_matches_attention_over_the_prefix():
    """Past `position` the buffers hold another branch's keys and values: they get weight 0."""
    gen = torch.Generator().manual_seed(0)
    keys, values = (torch.randn(5, 2, 20, 8, generator=gen) for _ in range(2))
    q = torch.randn(5, 2, 1, 8, generator=gen)
    for position in (0, 7, 19):
        whole = transformer.attend_full_buffer(q, 50 * keys, values, position)
        prefix = F.scaled_dot_product_attention(q, 50 * keys[:, :, : position + 1], values[:, :, : position + 1])
        assert torch.allclose(whole, prefix, atol=1e-5)


def test_raster_decoding_through_whole_buffer_attention_gives_the_same_images(tmp_path, monkeypatch):
    """Large batches attend over whole masked buffers; forcing that path on a small batch, including a second
    branch whose parent's buffers were written past its cache, decodes the same tokens."""
    generator = tiny_generator("ar", tmp_path)

    def branches():
        parent = generator.step(generator.init(PROMPTS, SEEDS))
        child = run_to_end(generator, generator.step(parent))
        sibling = run_to_end(generator, generator.step(parent))
        return child.tokens, sibling.tokens

    expected = branches()
    monkeypatch.setattr(transformer, "FULL_BUFFER_ATTENTION_ELEMENTS", 0)
    assert all(torch.equal(a, b) for a, b in zip(branches(), expected, strict=True))
