import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from convlstm.data.core.transforms import CenterCrop, Compose, RandomCrop, Resize


def position_item(height: int = 12, width: int = 16) -> dict[str, torch.Tensor]:
    """Pixel (y, x) holds 1000 * y + x in every frame, so a crop reveals where it was taken."""
    grid = 1000 * torch.arange(height)[:, None] + torch.arange(width)[None, :]
    clip = grid.float().expand(5, 2, height, width)
    return {
        "context": clip[:3].clone(),
        "target": clip[3:].clone(),
        "mask": (grid % 2 == 0).float().expand(2, 1, height, width).clone(),
    }


def crop_origin(clip: torch.Tensor) -> tuple[int, int]:
    corner = int(clip[0, 0, 0, 0])
    return corner // 1000, corner % 1000


def test_center_crop_position() -> None:
    out = CenterCrop((4, 6))(position_item())
    assert out["context"].shape == (3, 2, 4, 6)
    assert crop_origin(out["context"]) == ((12 - 4) // 2, (16 - 6) // 2)


def test_random_crop_is_the_same_for_every_tensor_of_an_item() -> None:
    crop = RandomCrop(5, seed=0)
    for _ in range(10):
        item = position_item()
        out = crop(item)
        top, left = crop_origin(out["context"])
        assert crop_origin(out["target"]) == (top, left)
        expected_mask = item["mask"][..., top : top + 5, left : left + 5]
        assert torch.equal(out["mask"], expected_mask)


def test_random_crop_is_seeded_and_varies() -> None:
    crop_a, crop_b = RandomCrop(5, seed=1), RandomCrop(5, seed=1)
    origins_a = [crop_origin(crop_a(position_item())["context"]) for _ in range(8)]
    origins_b = [crop_origin(crop_b(position_item())["context"]) for _ in range(8)]
    assert origins_a == origins_b
    assert len(set(origins_a)) > 1
    assert all(0 <= top <= 12 - 5 and 0 <= left <= 16 - 5 for top, left in origins_a)


class Crops(Dataset[torch.Tensor]):
    def __init__(self) -> None:
        self.crop = RandomCrop(3, seed=7)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        top, left = crop_origin(self.crop(position_item()["context"]))
        return torch.tensor([top, left])


def test_random_crop_in_workers_is_reproducible_with_a_seeded_loader() -> None:
    def run() -> torch.Tensor:
        loader = DataLoader(Crops(), batch_size=4, num_workers=2, generator=torch.Generator().manual_seed(0))
        return torch.cat(list(loader))

    first, second = run(), run()
    assert torch.equal(first, second)
    assert not torch.equal(first[:4], first[4:])  # the two workers do not repeat each other


def test_resize_bilinear_frames_and_nearest_masks() -> None:
    item = position_item(8, 8)
    out = Resize((4, 4))(item)
    assert out["context"].shape == (3, 2, 4, 4)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    constant = {"context": torch.full((2, 1, 8, 8), 0.25)}
    assert torch.allclose(Resize(3)(constant)["context"], torch.full((2, 1, 3, 3), 0.25))


def test_compose_and_bare_tensors() -> None:
    clip = position_item()["context"]
    out = Compose([Resize((10, 10)), CenterCrop(4)])(clip)
    assert out.shape == (3, 2, 4, 4)


def test_crop_larger_than_frames() -> None:
    with pytest.raises(ValueError, match="larger than the frames"):
        CenterCrop(20)(position_item())


def test_mismatched_spatial_sizes_are_an_error() -> None:
    item = {"context": torch.zeros(2, 1, 8, 8), "target": torch.zeros(1, 1, 6, 6)}
    with pytest.raises(ValueError, match="one spatial size"):
        RandomCrop(4)(item)


def test_bad_size() -> None:
    with pytest.raises(ValueError, match="size"):
        Resize((0, 4))
