import numpy as np
import pytest
from PIL import Image

from kerasseg.data.masks import SegmentationFolder
from kerasseg.data.synthetic import synthetic_shapes


def _write(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def _folder(tmp_path, names=("1", "2", "10"), size=(16, 24), mask_value=255):
    rng = np.random.default_rng(0)
    for _index, name in enumerate(names):
        image = rng.integers(0, 256, size, dtype=np.uint8)
        mask = np.where(image > 128, mask_value, 0).astype(np.uint8)
        _write(tmp_path / "images" / f"{name}.png", image)
        _write(tmp_path / "masks" / f"{name}.png", mask)
    return tmp_path / "images", tmp_path / "masks"


def test_pairs_in_natural_order_and_maps_mask_values(tmp_path):
    images_dir, masks_dir = _folder(tmp_path)
    folder = SegmentationFolder(images_dir, masks_dir, channels=1, mask_values={0: 0, 255: 1})
    assert [p[0].name for p in folder.pairs] == ["1.png", "2.png", "10.png"]
    images, masks = folder.load()
    assert images.shape == (3, 16, 24, 1) and images.dtype == np.float32
    assert masks.shape == (3, 16, 24, 1) and masks.dtype == np.int32
    np.testing.assert_array_equal(masks[..., 0], (images[..., 0] > 128).astype(np.int32))


def test_grayscale_is_replicated_to_rgb_and_rgb_converted_to_gray(tmp_path):
    images_dir, masks_dir = _folder(tmp_path, names=("a",))
    rgb, _ = SegmentationFolder(
        images_dir, masks_dir, channels=3, mask_values={0: 0, 255: 1}
    ).load()
    gray, _ = SegmentationFolder(
        images_dir, masks_dir, channels=1, mask_values={0: 0, 255: 1}
    ).load()
    np.testing.assert_array_equal(rgb, np.repeat(gray, 3, axis=-1))


def test_sixteen_bit_images_are_scaled_to_0_255(tmp_path):
    image = np.array([[0, 65535], [32768, 13107]], dtype=np.uint16)
    _write(tmp_path / "i" / "a.png", image)
    _write(tmp_path / "m" / "a.png", np.zeros((2, 2), np.uint8))
    images, _ = SegmentationFolder(tmp_path / "i", tmp_path / "m", channels=1).load()
    np.testing.assert_allclose(images[0, ..., 0], image * 255.0 / 65535.0, rtol=1e-6)


def test_missing_and_extra_masks_are_listed(tmp_path):
    images_dir, masks_dir = _folder(tmp_path)
    (masks_dir / "2.png").rename(masks_dir / "20.png")
    with pytest.raises(
        ValueError,
        match=r"images without a mask: \['2.png'\]; masks without an image: \['20.png'\]",
    ):
        SegmentationFolder(images_dir, masks_dir)


def test_mask_suffix_pairs_names(tmp_path):
    images_dir, masks_dir = _folder(tmp_path, names=("a",))
    (masks_dir / "a.png").rename(masks_dir / "a_mask.png")
    assert len(SegmentationFolder(images_dir, masks_dir, mask_suffix="_mask")) == 1


def test_size_mismatch_names_both_files(tmp_path):
    images_dir, masks_dir = _folder(tmp_path, names=("a",))
    _write(masks_dir / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"a.png' is 24x16 \(WxH\) but its mask '.*a.png' is 8x8"):
        SegmentationFolder(images_dir, masks_dir)


def test_unknown_mask_values_name_the_file(tmp_path):
    images_dir, masks_dir = _folder(tmp_path, names=("a",), mask_value=200)
    folder = SegmentationFolder(images_dir, masks_dir, mask_values={0: 0, 255: 1})
    with pytest.raises(
        ValueError, match=r"Mask '.*masks/a.png' has values \[200\] that are not keys"
    ):
        folder.load()


def test_class_ids_out_of_range_name_the_file(tmp_path):
    images_dir, masks_dir = _folder(tmp_path, names=("a",), mask_value=7)
    with pytest.raises(ValueError, match=r"Mask '.*a.png' has class ids \[7\] outside 0..2"):
        SegmentationFolder(images_dir, masks_dir, num_classes=3).load()


def test_binary_masks_of_0_and_255_need_mask_values(tmp_path):
    """The ISBI case: masks stored as 0/255 for a binary model. Before, they trained as
    class ids 0 and 255 (a loss of -4.62 and a Dice of 0.74 for the wrong class)."""
    images_dir, masks_dir = _folder(tmp_path, names=("a", "b"), mask_value=255)
    folder = SegmentationFolder(images_dir, masks_dir, num_classes=1)
    message = (
        r"class ids \[255\] outside 0..1 \(num_classes=1; the mask's values are \[0, 255\]\)"
        r".*mask_values=\{0: 0, 255: 1\} \(on the command line --mask-values 0:0,255:1\)"
    )
    with pytest.raises(ValueError, match=message):
        folder.check_masks()  # up front, reading every mask
    with pytest.raises(ValueError, match=message):
        folder.load()
    _, masks = SegmentationFolder(
        images_dir, masks_dir, num_classes=1, mask_values={0: 0, 255: 1}
    ).load()
    assert set(np.unique(masks)) == {0, 1}
    with pytest.raises(ValueError, match=r"maps \{255: 3\} to class ids outside 0..1"):
        SegmentationFolder(images_dir, masks_dir, num_classes=1, mask_values={0: 0, 255: 3})


def test_corrupt_image_names_the_file(tmp_path):
    images_dir, masks_dir = _folder(tmp_path, names=("a",))
    (images_dir / "b.png").write_bytes(b"not a png")
    _write(masks_dir / "b.png", np.zeros((16, 24), np.uint8))
    with pytest.raises(
        ValueError, match=r"Cannot read image file '.*images.*b\.png': cannot identify image file"
    ):
        SegmentationFolder(images_dir, masks_dir)


def test_missing_or_empty_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="`images_dir` directory"):
        SegmentationFolder(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        SegmentationFolder(tmp_path / "empty", tmp_path / "empty")


def test_dataset_augments_image_and_mask_jointly_and_is_reproducible(tmp_path):
    images_dir, masks_dir = _folder(tmp_path, names=[str(i) for i in range(4)], size=(32, 32))
    folder = SegmentationFolder(images_dir, masks_dir, channels=1, mask_values={0: 0, 255: 1})

    def batches(seed):
        data = folder.dataset(
            batch_size=2, crop_size=(16, 16), augment=True, shuffle=True, repeat=True, seed=seed
        )
        return [(x.numpy(), y.numpy()) for x, y in data.take(4)]

    first, again, other = batches(3), batches(3), batches(4)
    for images, masks in first:
        assert images.shape == (2, 16, 16, 1) and masks.shape == (2, 16, 16, 1)
        # The mask was derived from the image pixel by pixel: any misalignment breaks this.
        np.testing.assert_array_equal(masks, (images > 128).astype(np.int32))
    for (a, b), (c, d) in zip(first, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert any(not np.array_equal(a, c) for (a, _), (c, _) in zip(first, other))


def test_dataset_without_augmentation_centre_crops_and_decodes_errors_lazily(tmp_path):
    images_dir, masks_dir = _folder(tmp_path, names=("a", "b"), size=(20, 20))
    folder = SegmentationFolder(images_dir, masks_dir, channels=1, mask_values={0: 0, 255: 1})
    ((images, _masks),) = list(folder.dataset(batch_size=2, crop_size=(10, 10)))
    full, _ = folder.load()
    np.testing.assert_array_equal(images.numpy(), full[:, 5:15, 5:15])
    with pytest.raises(IndexError, match="the folder has 2 pairs"):
        folder.dataset(indices=[5])


def test_synthetic_shapes_are_deterministic_and_labelled():
    images, masks = synthetic_shapes(3, (40, 30), num_classes=2, seed=5)
    again, _ = synthetic_shapes(3, (40, 30), num_classes=2, seed=5)
    np.testing.assert_array_equal(images, again)
    assert images.shape == (3, 40, 30, 3) and masks.shape == (3, 40, 30, 1)
    assert 0 <= images.min() and images.max() <= 255
    assert set(np.unique(masks)) <= {0, 1, 2} and masks.max() > 0
    # Foreground is brighter on average than the background, but the ranges overlap.
    assert images[masks[..., 0] > 0].mean() > images[masks[..., 0] == 0].mean()
