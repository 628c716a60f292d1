"""Dataset readers and the dataset interface, on tiny files the tests write."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from ml_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from svp_fast.data import (DATASETS, ArrayDataset, ImageFolderDataset, crop_flip, load_arrays,
                           load_cifar, load_dataset, load_digits, load_fashion_mnist,
                           load_image_folder, read_idx)


# ----------------------------------------------------------------------------- helpers

def write_idx(path, array, gz=True):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def make_fashion_folder(folder, n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    parts = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        parts[split] = (images, labels)
    return parts


def cifar_pickle(path, images, labels, key=b"labels", extra=None):
    d = {b"data": images.reshape(len(images), -1), key: list(labels)}
    d.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(d, f)


# ----------------------------------------------------------------------------- digits

def test_digits_split_shapes_and_normalisation():
    s = load_digits()
    assert len(s.train) + len(s.test) == 1797
    assert len(s.test) == 450  # scikit-learn rounds the test part up
    assert s.train.spec.input_shape == (1, 8, 8) and s.train.spec.kind == "image"
    assert s.train.num_classes == s.test.num_classes == 10
    # stratified: every class in both parts, in about the same share
    assert np.all(np.bincount(s.test.labels, minlength=10) >= 40)
    x, = s.train.batch(np.arange(len(s.train)))
    assert x.shape == (len(s.train), 1, 8, 8) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2
    # the test part uses the training part's statistics, not its own
    assert s.test.normalisation() == s.train.normalisation()


def test_digits_split_is_seeded():
    a, b, c = load_digits(seed=3), load_digits(seed=3), load_digits(seed=4)
    assert np.array_equal(a.train.labels, b.train.labels)
    assert torch.equal(a.train.inputs, b.train.inputs)
    assert not torch.equal(a.train.inputs, c.train.inputs)


# ----------------------------------------------------------------------------- Fashion-MNIST (idx)

def test_fashion_mnist_from_idx_files(tmp_path):
    parts = make_fashion_folder(tmp_path)
    s = load_fashion_mnist(tmp_path)
    assert (len(s.train), len(s.test)) == (12, 5)
    assert s.train.spec.input_shape == (1, 28, 28)
    assert s.train.augmentation == "none"  # only 32x32 images get crop+flip by default
    assert np.array_equal(s.train.labels, parts["train"][1])
    assert np.array_equal(s.train.inputs[:, 0].numpy(), parts["train"][0])  # kept as uint8
    # a batch is the pixel / 255, normalised with the training set's mean and std
    imgs = parts["train"][0].astype(np.float64) / 255
    mean, std = imgs.mean(), imgs.std()
    x, = s.train.batch(np.array([3, 0]))
    np.testing.assert_allclose(x[:, 0].numpy(), (imgs[[3, 0]] - mean) / std, rtol=1e-4, atol=1e-4)
    x_test, = s.test.batch(np.array([1]))
    np.testing.assert_allclose(x_test[0, 0].numpy(),
                               (parts["test"][0][1] / 255 - mean) / std, rtol=1e-4, atol=1e-4)


def test_read_idx_plain_and_big_endian_ints(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    write_idx(tmp_path / "a.idx", a, gz=False)
    out = read_idx(tmp_path / "a.idx")
    assert out.dtype == np.int32 and np.array_equal(out, a)


def test_idx_errors(tmp_path):
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04rest"))
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "bad.gz")
    write_idx(tmp_path / "t.gz", np.zeros((3, 2), np.uint8))
    data = gzip.decompress((tmp_path / "t.gz").read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(data[:-1]))
    with pytest.raises(ValueError, match="announces"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "notgz.gz").write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match="cannot read idx"):
        read_idx(tmp_path / "notgz.gz")


def test_fashion_mnist_missing_folder_and_file(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist.*train-images-idx3-ubyte.gz"):
        load_fashion_mnist(missing)
    make_fashion_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz.*is missing"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_mismatched_counts(tmp_path):
    make_fashion_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        load_fashion_mnist(tmp_path)


# ----------------------------------------------------------------------------- CIFAR

def test_cifar10_pickles(tmp_path):
    rng = np.random.default_rng(1)
    batches = []
    for i in range(1, 6):
        imgs = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(3)]
        cifar_pickle(tmp_path / f"data_batch_{i}", imgs, labels)
        batches.append((imgs, labels))
    test_imgs = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    cifar_pickle(tmp_path / "test_batch", test_imgs, [7, 9])
    s = load_cifar(tmp_path)
    assert (len(s.train), len(s.test)) == (15, 2)
    assert s.train.spec.input_shape == (3, 32, 32) and s.train.num_classes == 10
    assert s.train.augmentation == "crop_flip"
    assert np.array_equal(s.train.labels, np.concatenate([b[1] for b in batches]))
    # rows are stored channel-first, in file order
    assert np.array_equal(s.train.inputs[4].numpy(), batches[1][0][1])
    assert np.array_equal(s.test.labels, [7, 9])
    # load_dataset reaches the same reader
    s2 = load_dataset("cifar10", tmp_path, augmentation="none")
    assert s2.train.augmentation == "none" and len(s2.train) == 15


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    for name in ("train", "test"):
        cifar_pickle(tmp_path / name, imgs, [0, 99, 5, 42], key=b"fine_labels",
                     extra={b"coarse_labels": [0, 19, 1, 3]})
    fine = load_cifar(tmp_path, num_classes=100)
    assert fine.train.num_classes == 100 and list(fine.train.labels) == [0, 99, 5, 42]
    coarse = load_cifar(tmp_path, num_classes=100, label_mode="coarse")
    assert coarse.train.num_classes == 20 and list(coarse.test.labels) == [0, 19, 1, 3]


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar(tmp_path)
    with pytest.raises(ValueError, match="num_classes must be 10 or 100"):
        load_cifar(tmp_path, num_classes=5)
    (tmp_path / "train").write_bytes(b"not a pickle")
    (tmp_path / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read CIFAR pickle"):
        load_cifar(tmp_path, num_classes=100)
    with pytest.raises(ValueError, match="needs a root"):
        load_dataset("cifar10")


# ----------------------------------------------------------------------------- image folders

def _png(path, colour, size=(40, 30)):
    Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to write test images")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_image_folder_train_val(tmp_path):
    _png(tmp_path / "train" / "cat" / "a.png", (255, 0, 0))
    _png(tmp_path / "train" / "cat" / "sub" / "b.png", (255, 0, 0))
    _png(tmp_path / "train" / "dog" / "c.PNG", (0, 0, 255), size=(20, 50))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    _png(tmp_path / "val" / "dog" / "d.png", (0, 0, 255))
    s = load_image_folder(tmp_path, image_size=16)
    assert s.train.classes == ["cat", "dog"]
    assert list(s.train.labels) == [0, 0, 1]
    assert list(s.test.labels) == [1]  # val has only dog, labelled with train's numbering
    assert s.train.spec.input_shape == (3, 16, 16) and s.train.augmentation == "crop_flip"
    x, = s.train.batch(np.array([0, 2]))
    assert x.shape == (2, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    red = (torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1) - mean) / std
    torch.testing.assert_close(x[0], red.expand(3, 16, 16))
    via_name = load_dataset("imagefolder", tmp_path, image_size=16)
    assert len(via_name.train) == 3


def test_image_folder_errors(tmp_path):
    pytest.importorskip("PIL.Image", reason="Pillow is needed for image folders")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no images"):
        ImageFolderDataset(tmp_path / "empty")
    _png(tmp_path / "x" / "bird" / "a.png", (1, 2, 3))
    with pytest.raises(ValueError, match="not among"):
        ImageFolderDataset(tmp_path / "x", classes=["cat"])
    (tmp_path / "x" / "bird" / "broken.png").write_bytes(b"garbage")
    ds = ImageFolderDataset(tmp_path / "x")
    with pytest.raises(ValueError, match="cannot decode image .*broken.png"):
        ds.batch(np.arange(len(ds)))


# ----------------------------------------------------------------------------- arrays

def test_arrays_npz_with_test_part(tmp_path):
    rng = np.random.default_rng(0)
    x_tr = rng.normal(size=(10, 5)).astype(np.float32)
    x_te = rng.normal(size=(4, 5)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x_tr, y_train=np.arange(10) % 3, x_test=x_te,
             y_test=np.array([0, 1, 2, 3]))
    s = load_arrays(tmp_path / "d.npz")
    assert s.train.spec.kind == "vector" and s.train.spec.input_shape == (5,)
    assert s.train.num_classes == 4 == s.test.num_classes  # the test part's class 3 counts
    x, = s.train.batch(np.arange(10))
    np.testing.assert_allclose(x.numpy().mean(0), 0, atol=1e-5)


def test_arrays_folder_of_npy_nhwc_images_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)  # channels last
    y = np.arange(20) % 2
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    s = load_arrays(tmp_path, test_fraction=0.25, seed=1)
    assert (len(s.train), len(s.test)) == (15, 5)
    assert s.train.spec.input_shape == (3, 6, 6)
    # every image appears once across the parts, transposed to channels first
    stored = np.concatenate([s.train.inputs.numpy(), s.test.inputs.numpy()])
    expected = x.transpose(0, 3, 1, 2)
    key = lambda a: sorted(map(bytes, a))  # noqa: E731
    assert key(stored) == key(expected)
    assert np.bincount(s.test.labels).tolist() == [3, 2] or np.bincount(s.test.labels).tolist() == [2, 3]


def test_arrays_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_arrays(tmp_path / "none.npz")
    np.savez(tmp_path / "k.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"holds \['a'\]; expected"):
        load_arrays(tmp_path / "k.npz")
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(ValueError, match="cannot read arrays"):
        load_arrays(tmp_path / "o.npz")
    np.savez(tmp_path / "f.npz", x=np.zeros((4, 2)), y=np.array([0.5, 1, 0, 1]))
    with pytest.raises(TypeError, match="integer classes"):
        load_arrays(tmp_path / "f.npz")
    np.save(tmp_path / "single.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="single .npy array"):
        load_arrays(tmp_path / "single.npy")


# ----------------------------------------------------------------------------- registry and interface

def test_load_dataset_names_and_errors():
    assert set(DATASETS) == {"digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "arrays",
                             "amazon-csv", "text-csv", "jsonl"}  # text: test_text.py
    with pytest.raises(ValueError, match="dataset must be one of .*got 'mnist9'"):
        load_dataset("mnist9")
    with pytest.raises(ValueError, match="takes no root"):
        load_dataset("digits", "/tmp")
    assert len(load_dataset("digits").train) == 1347


def test_array_dataset_never_modifies_inputs_and_labels_are_read_only():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    y = np.array([1, 0])
    before = x.copy()
    ds = ArrayDataset(x, y, augmentation="crop_flip")
    ds.batch(np.array([0, 1]), augment=True, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(x, before) and np.array_equal(y, [1, 0])
    with pytest.raises(ValueError):
        ds.labels[0] = 5


def test_array_dataset_shares_read_only_and_copies_strided_inputs(tmp_path):
    x = np.arange(24, dtype=np.uint8).reshape(6, 4)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")  # read-only: no warning, no copy
    ds = ArrayDataset(mapped, np.arange(6) % 2, mean=0, std=1)
    assert np.shares_memory(ds.inputs.numpy(), mapped)
    reversed_rows = x[::-1]  # negative strides: copied once
    ds = ArrayDataset(reversed_rows, np.arange(6) % 2, mean=0, std=1)
    first, = ds.batch(np.array([0]))
    np.testing.assert_allclose(first.numpy()[0], x[5] / 255)


def test_array_dataset_errors():
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        ArrayDataset(np.zeros((3, 2), np.float32), [0, 1])
    with pytest.raises(ValueError, match="inputs must be"):
        ArrayDataset(np.zeros((3, 2, 2), np.float32), [0, 1, 2])
    with pytest.raises(ValueError, match="NaN or Inf"):
        ArrayDataset(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ValueError, match="crop_flip.*needs"):
        ArrayDataset(np.zeros((3, 2), np.float32), [0, 1, 2], augmentation="crop_flip")
    with pytest.raises(ValueError, match=">= 0"):
        ArrayDataset(np.zeros((2, 2), np.float32), [0, -1])
    ds = ArrayDataset(np.zeros((3, 2), np.float32), [0, 1, 2])
    with pytest.raises(ValueError, match=r"indices must be in \[0, 3\), got 3"):
        ds.batch(np.array([0, 3]))
    with pytest.raises(TypeError, match="indices must hold integers"):
        ds.batch(np.array([0.0]))


def test_crop_flip_matches_a_per_image_reference():
    gen_seed = 7
    x = torch.randn(6, 2, 5, 5)
    out = crop_flip(x, torch.Generator().manual_seed(gen_seed), padding=2)
    g = torch.Generator().manual_seed(gen_seed)
    dy = torch.randint(0, 5, (6,), generator=g)
    dx = torch.randint(0, 5, (6,), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        crop = padded[i, :, dy[i]:dy[i] + 5, dx[i]:dx[i] + 5]
        if flip[i]:
            crop = crop.flip(-1)
        torch.testing.assert_close(out[i], crop)
    assert flip.any() and (~flip).any()  # both branches were exercised
