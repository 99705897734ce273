"""Vocabularies: templates, canonicalisation, template averaging, files, cache and compatibility checks.
A tiny random SigLIP text model and a word-level tokenizer are built here: no downloads."""

import pytest
import torch
import torch.nn.functional as F

from radseg_edge.errors import VocabularyError
from radseg_edge.models.text import (
    IMAGENET_TEMPLATES,
    TextEncoder,
    Vocabulary,
    canonicalize,
    parse_class_list,
    read_class_file,
)
from radseg_edge.pipeline import RADSeg

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def encoder():
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for t in IMAGENET_TEMPLATES for w in canonicalize(t.format("")).split()} |
                   {"sky", "road", "car", "potted", "plant", "tree"})
    vocab = {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    config = transformers.SiglipTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64,
                                           projection_size=64)
    model = transformers.SiglipTextModel(config)
    return TextEncoder(model, tokenizer, "test/tiny-siglip", max_length=64)


class CountingEncoder:
    def __init__(self, inner):
        self.inner, self.calls, self.model_id = inner, 0, inner.model_id

    def encode(self, prompts):
        self.calls += 1
        return self.inner.encode(prompts)


def test_80_imagenet_templates_and_siglip_canonicalization():
    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    assert canonicalize("A  photo of the Potted_Plant.") == "a photo of the potted plant"
    assert canonicalize("tv-monitor, (old)") == "tvmonitor old"


def test_embedding_is_mean_of_normalized_template_embeddings(encoder, tmp_path):
    vocab = Vocabulary.build(["sky", "potted_plant"], encoder, cache_dir=tmp_path)
    prompts = [canonicalize(t.format("potted_plant")) for t in IMAGENET_TEMPLATES]
    expected = F.normalize(encoder.encode(prompts), dim=-1).mean(0)
    torch.testing.assert_close(vocab.embeddings[1], expected)
    assert vocab.embeddings.shape == (2, encoder.encode(["sky"]).shape[1])
    assert vocab.text_model == "test/tiny-siglip"
    assert vocab.embeddings[1].norm() < 1.0  # averaged, not re-normalised


def test_cache_is_keyed_by_model_and_prompt(encoder, tmp_path):
    counting = CountingEncoder(encoder)
    a = Vocabulary.build(["sky", "road"], counting, cache_dir=tmp_path)
    calls = counting.calls
    b = Vocabulary.build(["road", "sky", "car"], counting, cache_dir=tmp_path)
    assert counting.calls == calls + 1  # only "car" was embedded again
    torch.testing.assert_close(a.embeddings[0], b.embeddings[1])
    other = CountingEncoder(encoder)
    other.model_id = "another/model"
    Vocabulary.build(["sky"], other, cache_dir=tmp_path)
    assert other.calls == 1  # another model never reads this model's cache


def test_file_roundtrip_needs_no_text_tower(encoder, tmp_path):
    vocab = Vocabulary.build(["sky", "road", "car"], encoder, cache_dir=False)
    path = vocab.save(tmp_path / "v")
    assert path.suffix == ".safetensors"
    loaded = Vocabulary.load(path)
    assert loaded.names == vocab.names and loaded.text_model == vocab.text_model
    torch.testing.assert_close(loaded.embeddings, vocab.embeddings)
    assert loaded.subset(["car", "sky"]).names == ["car", "sky"]
    with pytest.raises(VocabularyError, match="not in this vocabulary"):
        loaded.subset(["boat"])


@pytest.mark.parametrize("names, message", [([], "no class names"), (["sky", ""], "empty"),
                                             (["sky", "Sky."], "duplicate")])
def test_bad_class_names(names, message):
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.from_embeddings(names, torch.zeros(len(names), 4))


def test_class_lists_and_files(tmp_path):
    assert parse_class_list("sky, road,car") == ["sky", "road", "car"]
    f = tmp_path / "classes.txt"
    f.write_text("# VOC\npottedplant\n\ntvmonitor\n")
    assert read_class_file(f) == ["pottedplant", "tvmonitor"]
    with pytest.raises(VocabularyError, match="class file not found"):
        read_class_file(tmp_path / "nope.txt")
    with pytest.raises(VocabularyError, match="not found"):
        Vocabulary.load(tmp_path / "nope.safetensors")
    with pytest.raises(VocabularyError, match="not a radseg-edge vocabulary"):
        Vocabulary.load(f)


def test_vocabulary_of_another_text_model_or_width_is_refused(tiny_radio):
    wrong_dim = Vocabulary.from_embeddings(["a", "b"], torch.randn(2, 48), "google/siglip2-so400m-patch16-naflex")
    with pytest.raises(VocabularyError, match="48-d.*outputs 64-d"):
        RADSeg(tiny_radio)(torch.rand(1, 3, 64, 64), wrong_dim)
    wrong_model = Vocabulary.from_embeddings(["a", "b"], torch.randn(2, 64), "google/siglip2-giant-opt-patch16-384")
    with pytest.raises(VocabularyError, match="built with text model google/siglip2-giant"):
        RADSeg(tiny_radio)(torch.rand(1, 3, 64, 64), wrong_model)
    with pytest.raises(VocabularyError, match="outputs 64-d"):
        RADSeg(tiny_radio)(torch.rand(1, 3, 64, 64), torch.randn(3, 65))
    ok = Vocabulary.from_embeddings(["a", "b"], torch.randn(2, 64))
    result = RADSeg(tiny_radio, crop=64, stride=32)(torch.rand(1, 3, 64, 96), ok)
    assert result.class_names == ["a", "b"] and result.labels.shape == (1, 64, 96)


def test_vocab_build_command_with_a_local_text_model(encoder, tmp_path, capsys):
    from radseg_edge.cli import main

    model_dir = tmp_path / "tiny-text"
    encoder.model.save_pretrained(model_dir)
    encoder.tokenizer.save_pretrained(model_dir)
    out = tmp_path / "v.safetensors"
    code = main(["vocab", "build", "--classes", "sky,road", "--text-model", str(model_dir), "-o", str(out), "--no-cache"])
    assert code == 0, capsys.readouterr().err
    vocab = Vocabulary.load(out)
    assert vocab.names == ["sky", "road"] and vocab.text_model == str(model_dir)
    direct = Vocabulary.build(["sky", "road"], encoder, cache_dir=False)
    torch.testing.assert_close(vocab.embeddings, direct.embeddings)
