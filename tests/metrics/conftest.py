import pytest


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """A random-init state dict of the FID Inception network (no download)."""
    from mmtok.metrics.inception import save_random_inception_weights

    path = tmp_path_factory.getbasetemp() / "inception_random_seed0.pth"  # shared by tests/metrics and tests/eval
    return path if path.is_file() else save_random_inception_weights(path, seed=0)
