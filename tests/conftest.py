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


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_disc_dir(tmp_path_factory, tiny_model_dir):
    """A discriminator on the tiny policy's backbone (an untrained head)."""
    from gan_cot.discriminator.model import Discriminator

    return Discriminator.from_backbone(str(tiny_model_dir)).save_pretrained(tmp_path_factory.mktemp("d") / "disc")


@pytest.fixture
def tiny_config(tiny_model_dir, tiny_disc_dir):
    """``make(folder, *overrides)``: configs/tiny.yaml on the tiny policy and discriminator, writing under folder."""
    from gan_cot.config_loader import load_config
    from gan_cot.trainer_config import AdversarialConfig

    def make(folder, *overrides):
        return load_config(
            AdversarialConfig,
            ROOT / "configs" / "tiny.yaml",
            [f"model={tiny_model_dir}", f"discriminator.name={tiny_disc_dir}", f"output_dir={folder / 'out'}",
             f"mlflow_dir={folder / 'mlruns'}", f"deepspeed={ROOT / 'configs/deepspeed/zero0.json'}", *overrides],
        )  # fmt: skip

    return make
