import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from gan_cot.models import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """An untrained tiny policy saved with save_pretrained (smallest config: fast tests)."""
    from gan_cot.models import build_tiny_model, save_pretrained

    model, tok = build_tiny_model(tiny_tokenizer, hidden_size=32, layers=2, heads=2)
    return save_pretrained(model, tok, tmp_path_factory.mktemp("models") / "tiny")
