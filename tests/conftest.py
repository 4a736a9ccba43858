import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Tiny CPU models run fastest on one intra-op thread (on 2-core CI machines extra
    threads only spin), and every test starts from the same seed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """A random-init state dict of the FID Inception network (no download), shared by tests."""
    from mmtok.metrics import save_random_inception_weights

    path = tmp_path_factory.getbasetemp() / "inception_random_seed0.pth"
    return path if path.is_file() else save_random_inception_weights(path, seed=0)
