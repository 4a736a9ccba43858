import pytest


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """A random-init state dict of the FID Inception network (no download)."""
    from mmtok.metrics.inception import save_random_inception_weights

    return save_random_inception_weights(tmp_path_factory.mktemp("inception") / "inception_random.pth", seed=0)
